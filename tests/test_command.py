"""Every command starts in a new interpreter: its config composes and resolves (the project's resolvers are
registered by the wrapper, whatever the command imports)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

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
