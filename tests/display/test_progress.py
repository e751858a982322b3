"""The epoch progress bar: drawn in a terminal counting epochs from one, never by parallel sweep jobs; the epoch lines
need the history they print."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios
from types import SimpleNamespace

import pytest

from mnist_lit.display.progress import EpochProgressBar, EpochSummary
from mnist_lit.errors import ConfigError
from mnist_lit.history import EpochHistory
from tests.conftest import start_cli, synthetic_overrides


def test_a_terminal_gets_a_bar_counting_epochs_from_one(synthetic, tmp_path):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # 40 rows, 100 columns
    args = [*synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1",
            "callbacks.progress_bar.refresh_seconds=0"]  # fmt: skip
    process = start_cli("train.py", *args, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "Epoch 1/1:" in out and "it/s" in out, out[-2000:]  # the bar, named as the epoch line names it
    assert "Epoch 0" not in out
    assert "Epoch 1/1  train/loss" in out


class Terminal:
    """Stands in for sys.stdout when it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("jobs_at_once, shown", [(1, True), (2, False)])
def test_parallel_sweep_jobs_draw_no_bars_even_in_a_terminal(monkeypatch, jobs_at_once, shown):
    monkeypatch.setattr(sys, "stdout", Terminal())
    bar = EpochProgressBar(jobs_at_once=jobs_at_once)
    bar.setup(SimpleNamespace(is_global_zero=True), None, "fit")
    assert bar.is_enabled is shown


def test_the_epoch_lines_are_refused_without_the_history_they_print():
    with pytest.raises(ConfigError, match="callbacks.epoch_summary is not allowed without callbacks.epoch_history"):
        EpochSummary().setup(SimpleNamespace(callbacks=[]), None, "fit")
    EpochSummary().setup(SimpleNamespace(callbacks=[EpochHistory()]), None, "fit")
