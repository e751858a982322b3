"""The tests' own preloaded interpreter (tests/preloaded_python.py): a command forked from it sees what it would
see in a new interpreter, and ends as it would end there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PRELOADED

PROBE = """
import json, os, signal, sys, time
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "name": __name__, "file": __file__,
    "variable": os.environ.get("PROBE_VARIABLE"), "sigint": repr(signal.getsignal(signal.SIGINT)),
    "sigterm": repr(signal.getsignal(signal.SIGTERM)), "stdin": sys.stdin.read(), "pid": os.getpid() > 1,
}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
action = sys.argv[1]
if action == "exit":
    sys.exit(3)
if action == "raise":
    raise ValueError("a bug")
if action == "wait":
    print("waiting", flush=True)
    time.sleep(60)
"""


def both(tmp_path: Path, argv: list[str], **popen) -> list[subprocess.Popen]:
    """The probe started by the preloaded interpreter and by a new one, with the same arguments and streams."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PROBE_VARIABLE": "seen"}
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    assert PRELOADED.can_start(env, options)
    fresh = subprocess.Popen([sys.executable, *argv], cwd=tmp_path, env=env, text=True, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **options)  # fmt: skip
    return [PRELOADED.start(argv, tmp_path, env, **options), fresh]


@pytest.mark.parametrize("action", ["ok", "exit", "raise"])
@pytest.mark.parametrize("form", ["script", "module"])
def test_a_command_sees_and_ends_as_in_a_new_interpreter(tmp_path, action, form):
    (tmp_path / "probe.py").write_text(PROBE)
    argv = [str(tmp_path / "probe.py"), action] if form == "script" else ["-m", "probe", action]
    preloaded, fresh = both(tmp_path, argv)
    (out, err), (fresh_out, fresh_err) = preloaded.communicate(timeout=60), fresh.communicate(timeout=60)
    assert preloaded.returncode == fresh.returncode == {"ok": 0, "exit": 3, "raise": 1}[action]
    assert json.loads(out) == json.loads(fresh_out)
    # A traceback's last lines are the command's own (the preloaded one starts with the frames that ran it).
    assert err.splitlines()[0] == fresh_err.splitlines()[0] == "to stderr"
    assert err.splitlines()[-3:] == fresh_err.splitlines()[-3:]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_reaches_the_command_as_in_a_new_interpreter(tmp_path, signum):
    (tmp_path / "probe.py").write_text(PROBE)
    processes = both(tmp_path, [str(tmp_path / "probe.py"), "wait"], stderr=subprocess.STDOUT)
    for process in processes:
        assert process.stdout.readline().startswith("{") and process.stdout.readline() == "to stderr\n"
        assert process.stdout.readline() == "waiting\n"
        process.send_signal(signum)
    (out, _), (fresh_out, _) = (p.communicate(timeout=60) for p in processes)
    assert [p.returncode for p in processes] == [-signum, -signum]  # KeyboardInterrupt unhandled: death by SIGINT
    assert out.splitlines()[-1:] == fresh_out.splitlines()[-1:]


def test_a_wait_times_out_and_a_kill_ends_the_command(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    preloaded, fresh = both(tmp_path, [str(tmp_path / "probe.py"), "wait"])
    for process in (preloaded, fresh):
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
        assert process.poll() is None
        process.kill()
        assert process.wait(timeout=60) == -signal.SIGKILL
        process.stdout.close()
        process.stderr.close()


def test_what_a_fork_cannot_give_goes_to_a_new_interpreter():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    assert PRELOADED.can_start({**env, "ANY_VARIABLE": "1"}, {"stdout": subprocess.PIPE})
    assert not PRELOADED.can_start({**env, "OMP_NUM_THREADS": "7"}, {})  # read when the libraries load
    assert not PRELOADED.can_start({k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}, {})
    assert not PRELOADED.can_start(env, {"stdin": subprocess.PIPE})
