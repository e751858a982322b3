"""Ctrl-C (SIGINT) and SIGTERM in every command: exit status 130 / 143, one line saying what was kept, no
traceback, no temporary file or folder left. Each case is a real process signalled at a chosen moment
from inside itself (tests/signal_probes.py), so the moment does not depend on timing."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, run_process, start_cli, synthetic_overrides, train_in_process

STATUS = {"SIGINT": 130, "SIGTERM": 143}
WORDS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}
TINY = ("model=mlp", "model.hidden=16", "trainer.max_epochs=1")
PROBE = "+callbacks.signal._target_=tests.signal_probes.SignalAt"


def run(command: str, *args: str) -> subprocess.CompletedProcess:
    """``python <args>`` in a new process (signals are the point), SIGINT handled as in a terminal."""
    return run_process(command, *args, check=False)


def probed(sig: str, function: str, nth: int, command: str, *args: str) -> subprocess.CompletedProcess:
    """``command`` with ``function`` sending ``sig`` to the process at its ``nth`` call."""
    return run("tests.signal_probes", sig, function, str(nth), command, *args)


def interrupted_line(done: subprocess.CompletedProcess, sig: str) -> str:
    """The one line of an interrupted command (asserting its status, and that no traceback came)."""
    output = done.stdout + done.stderr
    assert done.returncode == STATUS[sig], output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("Interrupted")]
    assert len(lines) == 1 and lines[0].startswith(f"Interrupted ({WORDS[sig]}): "), done.stderr[-3000:]
    return lines[0]


def temporary(folder: Path) -> list[Path]:
    """What the atomic writers (mnist_lit/io/atomic.py) leave while writing: ``.<name>.*.tmp``, ``.<name>.old-*``."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]


@pytest.fixture(scope="module")
def run_dir(synthetic, tmp_path_factory) -> Path:
    """A trained tiny run (best.ckpt, last.ckpt, metrics.json) with a report."""
    directory = tmp_path_factory.mktemp("signals") / "run"
    train_in_process(directory, *synthetic_overrides(synthetic), *TINY)
    run_cli("evaluate.py", f"run_dir={directory}", "tensorboard=false")  # in-process: only the tests signal
    return directory


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_train_interrupted_in_the_test_phase_names_the_checkpoints_and_how_to_test(synthetic, tmp_path, sig):
    run_dir = tmp_path / "run"
    done = run(
        "train.py", *synthetic_overrides(synthetic), *TINY, f"hydra.run.dir={run_dir}",
        PROBE, f"+callbacks.signal.signal_name={sig}", "+callbacks.signal.hook=on_test_batch_start",
    )  # fmt: skip
    line = interrupted_line(done, sig)
    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file() and not (run_dir / "metrics.json").exists()
    assert f"{best} and {last} kept" in line, line
    assert f"{run_dir / 'metrics.json'} is not written" in line and f"python evaluate.py run_dir={run_dir}" in line
    assert not temporary(run_dir)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_evaluate_interrupted_while_writing_keeps_the_previous_report(run_dir, sig):
    report = run_dir / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    # The third figure: the temporary folder holds some of the new report's files by then.
    done = probed(sig, "mnist_lit.evaluation.report:save_figure", 3, "evaluate.py", f"run_dir={run_dir}")
    assert (
        interrupted_line(done, sig)
        == f"Interrupted ({WORDS[sig]}): nothing written: the previous report {report} is unchanged"
    )
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    assert not temporary(run_dir)


def test_a_signal_between_the_renames_of_a_report_waits_until_it_is_in_place(run_dir, tmp_path):
    report = tmp_path / "report"
    # sync_dir's second call comes between atomic_dir's renames of the folders.
    done = probed(
        "SIGTERM", "mnist_lit.io.atomic:sync_dir", 2, "evaluate.py", f"run_dir={run_dir}", f"report_dir={report}"
    )
    assert interrupted_line(done, "SIGTERM").endswith(f"the new report {report} is written whole")
    assert (report / "report.md").is_file() and not temporary(tmp_path)


def test_predict_interrupted_while_writing_its_csv_writes_nothing(run_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        (images / f"{i}.png").write_bytes((run_dir / "report" / "samples.png").read_bytes())
    output = tmp_path / "predictions.csv"
    done = probed(
        "SIGINT", "csv:DictWriter.writerows", 1, "mnist_lit.predict",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"images={images}", f"output={output}",
    )  # fmt: skip
    assert interrupted_line(done, "SIGINT") == f"Interrupted (Ctrl-C): nothing written: no predictions CSV at {output}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_sweep_summary_terminated_keeps_whole_files(tmp_path):
    from tests.conftest import figures, make_job

    make_job(tmp_path, 0, ["model.hidden=16"], metrics=figures(0.9, 0.9, 100))
    make_job(tmp_path, 1, ["model.hidden=32"], metrics=figures(0.95, 0.94, 200))
    # The plot is written last, after summary.csv and summary.md.
    done = probed("SIGTERM", "mnist_lit.sweeps.summary:plot", 1, "mnist_lit.sweep_summary", str(tmp_path))
    line = interrupted_line(done, "SIGTERM")
    assert f"in {tmp_path} is whole, the previous one or the new one" in line, line
    assert (tmp_path / "summary.md").is_file() and not (tmp_path / "accuracy_vs_parameters.png").exists()
    assert not temporary(tmp_path)


def test_export_terminated_while_checking_writes_nothing(run_dir, synthetic, tmp_path):
    output = tmp_path / "model.onnx"
    # onnxruntime opens the temporary file to check it before it is renamed into place.
    done = probed(
        "SIGTERM", "onnxruntime:InferenceSession", 1, "mnist_lit.export",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"output={output}",
        f"data_dir={synthetic['data_dir']}", "check_images=10",
    )  # fmt: skip
    assert interrupted_line(done, "SIGTERM") == f"Interrupted (SIGTERM): nothing written: no ONNX export at {output}"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_a_multirun_lists_the_interrupted_job_in_the_summary(synthetic, tmp_path):
    sweep = tmp_path / "sweep"
    done = run(
        "train.py", "-m", *synthetic_overrides(synthetic), *TINY, f"hydra.sweep.dir={sweep}",
        PROBE, "+callbacks.signal.signal_name=SIGINT", "+callbacks.signal.hook=never,on_train_epoch_end,never",
    )  # fmt: skip
    line = interrupted_line(done, "SIGINT")
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 2, jobs  # the third job never started
    assert f"{sweep / 'summary.md'} lists the 2 jobs that started, with {jobs[1]} as interrupted" in line, line
    rows = {r.split("|")[2].strip(): r for r in (sweep / "summary.md").read_text().splitlines() if r.startswith("| ")}
    assert (
        "| ok |" in rows["0"]
        and "| failed |" in rows["1"]
        and "Interrupted (Ctrl-C): stopped during epoch 1" in rows["1"]
    )
    # The summary written again later lists it the same way.
    assert (sweep / jobs[1] / "error.txt").read_text().startswith(line.split("; ")[0])
    again = run("mnist_lit.sweep_summary", str(sweep))
    assert again.returncode == 0 and "Interrupted (Ctrl-C): stopped during epoch 1" in again.stdout
    assert not temporary(sweep)


def train_until_epoch(args: list[str], epoch: int, timeout: float = 120) -> subprocess.Popen:
    """Start ``python train.py`` and return once it has printed the line for ``epoch``."""
    proc = start_cli("train.py", *args, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"Epoch {epoch}/") or time.monotonic() > deadline:
            return proc
    raise AssertionError(f"train.py ended before epoch {epoch} (exit {proc.wait()})")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_saves_last_checkpoint_and_resumes(synthetic, tmp_path, sig):
    run_dir = tmp_path / "run"
    args = [*synthetic_overrides(synthetic), "callbacks.early_stopping.patience=1000", f"hydra.run.dir={run_dir}"]
    proc = train_until_epoch([*args, "trainer.max_epochs=100000"], epoch=2)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, output[-3000:]  # 130 for SIGINT, 143 for SIGTERM
    last = run_dir / "checkpoints" / "last.ckpt"
    what = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    lines = [line for line in output.splitlines() if line.startswith("Interrupted")]
    assert len(lines) == 1 and lines[0].startswith(f"Interrupted ({what}): stopped during epoch "), output[-3000:]
    assert lines[0].endswith(f"resume with the same overrides plus ckpt_path={last}") and "Traceback" not in output
    state = torch.load(last, weights_only=True)
    stopped_epoch = state["epoch"] + 1  # the last completed epoch
    assert stopped_epoch >= 1 and not (run_dir / "metrics.json").exists()

    target = stopped_epoch + 2
    run_cli("train.py", *args, f"ckpt_path={last}", f"trainer.max_epochs={target}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == target
    epochs = [record["epoch"] for record in metrics["history"]]
    assert epochs[-1] == target and epochs == sorted(set(epochs))
    assert metrics["test/acc"] is not None
