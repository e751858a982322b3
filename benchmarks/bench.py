"""``make bench``: the project's training epoch against a plain PyTorch loop, interleaved, medians.

Each round runs ``python train.py`` as users run it (real Hydra configs, data module, model and
Trainer; progress bar, per-epoch metrics, checkpointing and early stopping all on) with one
addition, ``benchmarks.plain_loop.InterleavedReference``: it trains the plain PyTorch reference
(same model, images, batch size and optimizer) in the same process, alongside the project: every
32 project optimizer steps the reference takes as many, timed apart, so the two sides take turns
every fraction of a second and meet the same machine state, which matters on a shared VM whose
speed drifts within a minute (benchmarks/README.md has by how much). Each project epoch
(from its start to the next epoch's: steps, fetches, validation, epoch-end logging, checkpoints)
is paired with the reference epoch trained alongside it (its steps and its validation pass). The
ratio is the median of the pairs' ratios; the first pair of every process is a warm-up, each side
alone, and not counted. Start-up (process start to the first epoch) and peak RSS come from the
same project processes and from the reference run alone (``benchmarks/plain_loop.py``).
Both training paths are measured: the default (standard Lightning: one batch per training_step,
automatic optimisation) and ``perf=fast`` (32 optimizer steps per fetched batch), each against
its own interleaved reference. Prints a table and writes it as JSON to
``benchmarks/results/<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning
import torch

from benchmarks.plain_loop import InterleavedReference
from mnist_lit.io.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where the figures come from."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def project_round(overrides: list[str], epochs: int) -> dict:
    """One ``python train.py`` process with the interleaved reference; both sides' epoch seconds."""
    with tempfile.TemporaryDirectory() as run_dir:
        reference = Path(run_dir) / "plain_reference.json"
        run([sys.executable, "train.py", *overrides, f"trainer.max_epochs={epochs}",
             "callbacks.early_stopping.patience=1000", f"hydra.run.dir={run_dir}",
             f"+callbacks.plain_reference._target_={InterleavedReference.__module__}.InterleavedReference",
             f"+callbacks.plain_reference.output={reference}"])  # fmt: skip
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        plain = json.loads(reference.read_text())
    unequal = [steps for steps in plain["steps"] if steps[0] != steps[1]]
    if unequal:
        raise SystemExit(f"the two sides took different numbers of optimizer steps in an epoch: {unequal}")
    return {
        "project": plain["project_epoch_seconds"],
        "plain": plain["epoch_seconds"],
        "startup_seconds": metrics["startup_seconds"],
        "peak_rss_mb": plain["project_peak_rss_mb"],
        "train_images": plain["train_images"],
        "steps_per_epoch": plain["steps"][0][0],
    }


def plain_alone(overrides: list[str]) -> dict:
    """The reference in its own process (2 epochs): its start-up and peak RSS."""
    out = run([sys.executable, "-m", "benchmarks.plain_loop", "--epochs=2", *overrides])
    return json.loads(out.strip().splitlines()[-1])


def measure(name: str, overrides: list[str], rounds: int, epochs: int) -> dict:
    """Rounds of interleaved epochs; medians of the non-warm-up epochs and of the pairs' ratios."""
    epoch_seconds: dict[str, list[float]] = {"project": [], "plain": []}
    pair_ratios: list[float] = []
    round_ratios: list[float] = []
    startup: dict[str, list[float]] = {"project": [], "plain": []}
    rss: dict[str, list[float]] = {"project": [], "plain": []}
    for round_ in range(rounds):
        result = project_round(overrides, epochs)
        train_images = result["train_images"]  # the same split in every round
        steps_per_epoch = result["steps_per_epoch"]
        project, plain = result["project"][1:], result["plain"][1:]
        ratios = [p / q for p, q in zip(project, plain, strict=True)]
        epoch_seconds["project"] += project
        epoch_seconds["plain"] += plain
        pair_ratios += ratios
        round_ratios.append(round(statistics.median(ratios), 3))
        startup["project"].append(result["startup_seconds"])
        rss["project"].append(result["peak_rss_mb"])
        alone = plain_alone(overrides)
        startup["plain"].append(alone["startup_seconds"])
        rss["plain"].append(alone["peak_rss_mb"])
        print(f"  {name} round {round_ + 1}/{rounds}: project " + " ".join(f"{s:.2f}" for s in result["project"])
              + " | plain " + " ".join(f"{s:.2f}" for s in result["plain"]), flush=True)  # fmt: skip
    row = {"model": name, "overrides": overrides, "rounds": rounds, "epochs_per_process": epochs}
    row["train_images"], row["steps_per_epoch"] = train_images, steps_per_epoch
    for kind in ("project", "plain"):
        epoch = statistics.median(epoch_seconds[kind])
        row[kind] = {
            "epoch_seconds": round(epoch, 3),
            "images_per_second": round(train_images / epoch),
            "startup_seconds": round(statistics.median(startup[kind]), 2),
            "peak_rss_mb": max(rss[kind]),
            "epoch_samples": [round(x, 5) for x in epoch_seconds[kind]],
        }
    row["ratio"] = round(statistics.median(pair_ratios), 3)
    row["pair_ratios"] = [round(x, 4) for x in pair_ratios]
    row["round_ratios"] = round_ratios
    return row


def table(rows: list[dict], info: dict) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info['gpu'] or 'none'}; "
        f"torch {info['torch']}, lightning {info['lightning']}, Python {info['python']}",
        "",
        "| model | epoch s (project) | epoch s (plain) | ratio | images/s (project) | images/s (plain) "
        "| start-up s (project / plain) | peak RSS MiB (project / plain) | ratio per round |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, q = r["project"], r["plain"]
        lines.append(
            f"| {r['model']} | {p['epoch_seconds']:.2f} | {q['epoch_seconds']:.2f} | {r['ratio']:.3f} "
            f"| {p['images_per_second']} | {q['images_per_second']} | {p['startup_seconds']:.1f} / "
            f"{q['startup_seconds']:.1f} | {p['peak_rss_mb']:.0f} / {q['peak_rss_mb']:.0f} "
            f"| {' '.join(f'{x:.2f}' for x in r['round_ratios'])} |"
        )
    return "\n".join(lines)


# "<model>" is the default, standard-Lightning path; "<model>-fast" the opt-in perf=fast path.
PRESETS = {
    "mlp": ["model=mlp"],
    "mlp-fast": ["model=mlp", "perf=fast"],
    "cnn": ["model=cnn"],
    "cnn-fast": ["model=cnn", "perf=fast"],
    "cnn-bf16": ["model=cnn", "trainer.precision=bf16-mixed"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "mlp-fast", "cnn", "cnn-fast"], choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=3, help="project processes per model")
    parser.add_argument("--epochs", type=int, default=6, help="epoch pairs per process (the first is not counted)")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON file (default benchmarks/results/<machine>.json)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="more Hydra overrides for both sides, after the model's (e.g. data.data_dir=...)"
    )
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs={args.epochs}: must be at least 2, since each process's first epoch is a warm-up")
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: must be at least 1")
    info = machine()
    started = time.perf_counter()
    rows = [measure(name, PRESETS[name] + args.overrides, args.rounds, args.epochs) for name in args.models]
    text = table(rows, info)
    print("\n" + text)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{info['cpu']}-{info['cores']}c-{info['gpu'] or 'cpu'}".lower()).strip("-")
    output = args.output or ROOT / "benchmarks" / "results" / f"{slug}.json"
    result = {"machine": info, "rows": rows, "table": text, "seconds": round(time.perf_counter() - started)}
    result["date"] = time.strftime("%Y-%m-%d")
    write_text(output, json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


if __name__ == "__main__":
    main()
