"""Every command in a new interpreter, as a user starts it (not the tests' preloaded one, which has imported every
module already): its config composes and resolves (the project's resolvers are registered by the wrapper, whatever
the command imports), and it does its work; and what the shell gives it: a pipe whose reader has gone, a closed
stdout, values Hydra reads only in quotes, bytes that are not UTF-8."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import ROOT, assert_refused, digit_image, figures, make_job, run_cli, start_cli, synthetic_overrides

COMMANDS = [
    ("train.py", "--cfg", "job", "--resolve"),
    ("evaluate.py", "--cfg", "job", "--resolve"),
    ("-m", "mnist_lit.predict", "--cfg", "job", "--resolve"),
    ("-m", "mnist_lit.export", "--cfg", "job", "--resolve"),
    ("-m", "mnist_lit.demo", "--cfg", "job", "--resolve"),
    ("-m", "mnist_lit.sweep_summary", "--help"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0] if args[0] != "-m" else args[1])
def test_each_command_starts_in_a_fresh_interpreter(args):
    # A new interpreter, not the tests' preloaded one: that one has imported every module already.
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "${" not in done.stdout  # every interpolation resolved


def fresh(*args: str) -> subprocess.CompletedProcess:
    """A command in a new interpreter; it must succeed."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_each_command_does_its_work_in_a_fresh_interpreter(synthetic, trained, tmp_path):
    """One real invocation of each command as a user types it, on the synthetic digits and one small run: train,
    evaluate, predict, export and a sweep's summary (the demo's server is started in tests/test_demo.py)."""
    fresh("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_epochs=1",
          "model.hidden=16")  # fmt: skip
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    fresh("evaluate.py", f"run_dir={trained}", f"report_dir={tmp_path / 'report'}", "tensorboard=false")
    assert (tmp_path / "report" / "report.md").is_file()
    Image.fromarray(digit_image()).save(tmp_path / "digit.png")
    ckpt = trained / "checkpoints" / "best.ckpt"
    fresh("-m", "mnist_lit.predict", f"ckpt_path={ckpt}", f"images={tmp_path / 'digit.png'}",
          f"output={tmp_path / 'predictions.csv'}")  # fmt: skip
    assert (tmp_path / "predictions.csv").read_text().count("\n") == 2  # the header and the image's row
    fresh("-m", "mnist_lit.export", f"ckpt_path={ckpt}", f"output={tmp_path / 'model.onnx'}")
    assert (tmp_path / "model.onnx").stat().st_size > 0
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["model.hidden=8"], figures(0.9, 0.9, 100))
    make_job(sweep, 1, ["model.hidden=16"], figures(0.95, 0.94, 200))
    fresh("-m", "mnist_lit.sweep_summary", str(sweep))
    assert "2 jobs: 2 finished, 0 failed" in (sweep / "summary.md").read_text()


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("model=transformer", "model=transformer is not allowed: choose from cnn, lenet5, mlp"),
        ("logger=[tensorboard,nope]", "logger=nope is not allowed: choose from csv, mlflow, tensorboard, wandb"),
        ("hydra/launcher=nope", "hydra/launcher=nope is not allowed: choose from basic, joblib"),
        ("scheduler=null", "scheduler=null is not allowed: a config group is left out with ~scheduler"),
        ("model.nonsense=3", "Could not override 'model.nonsense'. To append to your config use +model.nonsense=3"),
        ("logger=[a,", "logger=[a, cannot be read"),
    ],
)
def test_what_hydra_cannot_compose_ends_in_one_error_line(arg, expected, tmp_path):
    assert_refused(run_cli("train.py", f"paths.log_dir={tmp_path / 'logs'}", arg, check=False), expected)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("command", ["train.py", "evaluate.py", "mnist_lit.predict", "mnist_lit.serve"])
def test_a_reader_that_has_gone_ends_the_command_quietly(command):
    """``python train.py --help | head -1``: the reader of stdout goes first, and the command ends as Unix tools do."""
    read, write = os.pipe()
    os.close(read)
    try:
        process = start_cli(command, "--help", stdout=write)
    finally:
        os.close(write)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141 and "Traceback" not in stderr, stderr


def test_a_closed_stdout_is_no_error():
    """``python train.py --cfg job >&-``: what would go to stdout goes nowhere."""
    done = subprocess.run([sys.executable, "train.py", "--cfg", "job"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: os.close(1), timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""


SHELL_CASES = {  # the working directory, an argument, what the refusal says (None: it runs)
    "a value Hydra reads only quoted": (
        ".",
        "hydra.run.dir=run dir ü",
        """in quotes, inside the shell's: 'hydra.run.dir="run dir ü"'""",
    ),
    "the same quoted": (".", 'hydra.run.dir="run dir ü"', None),
    "bytes that are not UTF-8": (".", os.fsdecode(b"hydra.run.dir=q\xffrun"), "hydra.run.dir=q\\xffrun is not allowed"),
    "a working directory not UTF-8": (os.fsdecode(b"q\xff"), "seed=1", "q\\xff is not allowed: its path is not UTF-8"),
}


@pytest.mark.parametrize("cwd, arg, expected", SHELL_CASES.values(), ids=SHELL_CASES.keys())
def test_what_hydra_or_the_outputs_cannot_take_is_refused_saying_what_to_do(tmp_path, monkeypatch, cwd, arg, expected):
    (tmp_path / cwd).mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / cwd)
    done = run_cli("train.py", arg, "--cfg", "hydra", check=expected is None)
    if expected is None:
        assert "dir: run dir ü" in done.stdout
    else:
        assert_refused(done, expected)


@pytest.mark.parametrize(
    "command, args, expected",
    [
        ("mnist_lit.serve", [os.fsdecode(b"ckpt_path=q\xff.ckpt")], "ckpt_path=q\\xff.ckpt is not allowed: it is not"),
        (
            "train.py",
            ["-m", "hparams_search=cnn_optuna_quick", "hydra/sweeper/sampler=bogus"],
            "hydra/sweeper/sampler=bogus is not allowed: choose from grid, nsgaii, random, tpe",
        ),
    ],
)
def test_what_the_command_line_names_wrongly_is_refused_in_one_line(tmp_path, monkeypatch, command, args, expected):
    monkeypatch.chdir(tmp_path)
    assert_refused(run_cli(command, *args, check=False), expected)
    assert list(tmp_path.iterdir()) == []
