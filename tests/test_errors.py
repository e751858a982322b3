"""``mnist_lit.errors``: a user error that reaches a command's exit handler ends it with one ``Error:`` line and
status 2, without a traceback; any other exception keeps its traceback; ``describe`` puts any exception on one line.
"""

from __future__ import annotations

import pytest

import mnist_lit.training
from mnist_lit.errors import EXIT_STATUS, UserError, describe
from tests.conftest import assert_refused, run_cli, synthetic_overrides


class QuotaError(UserError):
    """A user error of the kind a module adds (as DataUnavailableError and FileProblem do)."""


def train_raising(monkeypatch: pytest.MonkeyPatch, error: Exception):
    """train.py's job, ``train(cfg)`` (imported when the job starts), replaced by one that raises ``error``."""

    def train(cfg):
        raise error

    monkeypatch.setattr(mnist_lit.training, "train", train)


def test_a_user_error_subclass_ends_train_py_with_one_line_and_status_2(synthetic, tmp_path, monkeypatch):
    train_raising(monkeypatch, QuotaError("the disk quota of /scratch is used up: free 2 GB"))
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert done.returncode == EXIT_STATUS == 2
    # the whole of stderr: the message alone (not the exception's type, not Hydra's "Error executing job")
    assert done.stderr.splitlines() == ["Error: the disk quota of /scratch is used up: free 2 GB"]


def test_an_error_that_is_not_the_users_keeps_its_traceback(synthetic, tmp_path, monkeypatch):
    train_raising(monkeypatch, RuntimeError("index 12 is out of bounds for the confusion matrix"))
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert done.returncode not in (0, EXIT_STATUS)
    assert "Traceback" in done.stderr
    assert "RuntimeError: index 12 is out of bounds for the confusion matrix" in done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("Error: ")]


def test_evaluate_py_turns_a_real_config_error_into_its_error_line(tmp_path):
    missing = tmp_path / "no_such_run"
    done = run_cli("evaluate.py", f"run_dir={missing}", check=False)
    assert_refused(done, f"run_dir={str(missing)!r} is not allowed")
    assert not missing.exists()


def test_describe_gives_the_type_and_the_first_line_of_any_exception():
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert describe(ValueError("\n\n  bad value  \nmore detail")) == "ValueError: bad value"
    assert describe(KeyError()) == "KeyError"
    assert describe(Unprintable("x")) == "Unprintable"
    cut = describe(OSError("x" * 500), limit=50)
    assert cut == "OSError: " + "x" * 47 + "..."
