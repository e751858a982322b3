"""``make bench``: the project's training epoch against a plain PyTorch loop, interleaved, medians.

For each model, rounds alternate two fresh processes: ``python train.py`` as users run it (real
Hydra configs, data module, model and Trainer; progress bar, per-epoch metrics, checkpointing,
early stopping all on) and ``benchmarks/plain_loop.py`` over the same model, tensors, batch
size and optimizer. An epoch is timed from its start to the end of its validation pass (and,
for the project, its checkpoint). The first epoch of every process is a warm-up and not counted.
Prints a table and writes it as JSON to ``benchmarks/results/<machine>.json``.
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

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 48_000


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


def project_epochs(overrides: list[str], epochs: int) -> dict:
    """One ``python train.py`` process; its metrics.json has per-epoch seconds and start-up time."""
    with tempfile.TemporaryDirectory() as run_dir:
        run([sys.executable, "train.py", *overrides, f"trainer.max_epochs={epochs}",
             "callbacks.early_stopping.patience=1000", f"hydra.run.dir={run_dir}"])  # fmt: skip
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {
        "epoch_seconds": [record["seconds"] for record in metrics["history"]],
        "startup_seconds": metrics["startup_seconds"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "test_acc": metrics["test/acc"],
    }


def plain_epochs(overrides: list[str], epochs: int) -> dict:
    out = run([sys.executable, "-m", "benchmarks.plain_loop", f"--epochs={epochs}", *overrides])
    return json.loads(out.strip().splitlines()[-1])


def measure(name: str, overrides: list[str], rounds: int, epochs: int) -> dict:
    """Alternate project and plain processes; medians of the non-warm-up epochs."""
    samples: dict[str, dict[str, list[float]]] = {
        kind: {"epoch": [], "startup": [], "rss": []} for kind in ("project", "plain")
    }
    round_ratios = []
    for round_ in range(rounds):
        order = [("project", project_epochs), ("plain", plain_epochs)]
        medians = {}
        for kind, fn in order if round_ % 2 == 0 else order[::-1]:
            result = fn(overrides, epochs)
            samples[kind]["epoch"] += result["epoch_seconds"][1:]
            samples[kind]["startup"].append(result["startup_seconds"])
            samples[kind]["rss"].append(result["peak_rss_mb"])
            medians[kind] = statistics.median(result["epoch_seconds"][1:])
            print(f"  {name} round {round_ + 1}/{rounds} {kind:7s} epochs "
                  + " ".join(f"{s:.2f}" for s in result["epoch_seconds"]), flush=True)  # fmt: skip
        # the two processes of a round ran back to back, so their ratio shares the machine's state
        round_ratios.append(round(medians["project"] / medians["plain"], 3))
    row = {"model": name, "overrides": overrides, "rounds": rounds, "epochs_per_process": epochs}
    for kind, s in samples.items():
        epoch = statistics.median(s["epoch"])
        row[kind] = {
            "epoch_seconds": round(epoch, 3),
            "images_per_second": round(TRAIN_IMAGES / epoch),
            "startup_seconds": round(statistics.median(s["startup"]), 2),
            "peak_rss_mb": max(s["rss"]),
            "epoch_samples": [round(x, 3) for x in s["epoch"]],
        }
    row["ratio"] = round(row["project"]["epoch_seconds"] / row["plain"]["epoch_seconds"], 3)
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


PRESETS = {
    "mlp": ["model=mlp"],
    "cnn": ["model=cnn"],
    "cnn-bf16": ["model=cnn", "trainer.precision=bf16-mixed"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=5, help="project/plain process pairs per model")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process (the first is not counted)")
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
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "rows": rows, "table": text, "seconds": round(time.perf_counter() - started)}
    result["date"] = time.strftime("%Y-%m-%d")
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


if __name__ == "__main__":
    main()
