"""New processes for the commands without a new interpreter's start-up: a Python that has imported the libraries
every command imports (torch, Lightning, Hydra, ...) forks itself, and the child runs the command.

A test that needs a command in a process of its own (a signal, a lock held by another process, a race) asked the
operating system for a new interpreter, which spends about 6 s of CPU importing torch and Lightning before the
command's first line. ``PreloadedPython`` starts one server per test process (``python -m tests.preloaded_python
<socket>``) that imports those libraries once. For each command the test sends its argument list, working
directory, environment and standard streams (as file descriptors over a Unix socket); the server forks, replies
with the child's pid and, once the child has ended, its exit status. ``Process`` is the test's handle on the child,
with ``subprocess.Popen``'s methods.

The child is the command's process as a new interpreter would be: its own pid, argv, working directory,
environment, standard streams and ``sys.path[0]``; SIGINT raising KeyboardInterrupt and SIGTERM ending it; the
script run as ``__main__`` (``runpy``, as ``python <script>`` and ``python -m <module>`` do), and its end handled
by the interpreter itself (exit status, traceback, death by an unhandled KeyboardInterrupt, atexit). The project
itself is never imported by the server: its import-time code runs in each command. The server runs no torch
operation, so no thread pool of torch's exists when it forks. What a fork cannot give, the caller falls back to a
new interpreter for: an environment that differs from the server's in a variable read when the interpreter or a
library starts (``STARTUP_VARIABLES``), a standard input, or any other ``Popen`` option.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy

# The libraries the server imports: what ``python train.py``, ``evaluate.py``, ``-m mnist_lit.predict`` and the
# sweeps import before their first line of work (the project excepted).
LIBRARIES = (
    "numpy", "torch", "torchvision", "torchmetrics", "lightning", "lightning.pytorch", "kornia", "hydra",
    "hydra.core.hydra_config", "omegaconf", "matplotlib", "PIL.Image", "yaml", "filelock", "tqdm",
    "torch.utils.tensorboard",
)  # fmt: skip
# Variables read once, when the interpreter or a library it has loaded starts: a child of the server would not see
# a new value of them.
STARTUP_VARIABLES = ("PYTHON", "LD_", "MALLOC_", "GLIBC_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "TORCH",
                     "PYTORCH", "NCCL_", "MPLBACKEND", "LC_", "LANG", "TMPDIR")  # fmt: skip
MESSAGE = 1 << 20  # the largest request: an argument list and an environment


def startup_environment(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES)}


class Process:
    """A command started by the server, with the methods of ``subprocess.Popen`` the tests use."""

    def __init__(self, args: list[str], pid: int, channel: socket.socket, stdout: Any, stderr: Any) -> None:
        self.args, self.pid, self.stdout, self.stderr = args, pid, stdout, stderr
        self.returncode: int | None = None
        self.channel = channel
        self.readers: dict[str, threading.Thread] = {}
        self.output: dict[str, str] = {}

    def receive_status(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self.channel.settimeout(timeout)
        try:
            message = self.channel.recv(MESSAGE)
        except (TimeoutError, BlockingIOError):
            return
        if not message:  # the server ended before the command: it cannot report its status
            raise RuntimeError(f"the preloaded interpreter ended while {self.args} ran")
        self.returncode = json.loads(message)["returncode"]
        self.channel.close()

    def poll(self) -> int | None:
        self.receive_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.receive_status(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        if input is not None:
            raise ValueError("the command has no standard input")
        # One thread per pipe, as Popen reads them where it cannot select, so neither pipe fills up and blocks.
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None and name not in self.readers:
                reader = threading.Thread(target=self.read_all, args=(name, stream), daemon=True)
                reader.start()
                self.readers[name] = reader
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0, deadline - time.monotonic())

        for reader in self.readers.values():
            reader.join(remaining())
            if reader.is_alive():
                raise subprocess.TimeoutExpired(
                    self.args, timeout, self.output.get("stdout"), self.output.get("stderr")
                )
        self.wait(remaining())
        return self.output.get("stdout"), self.output.get("stderr")

    def read_all(self, name: str, stream: Any) -> None:
        self.output[name] = stream.read()
        stream.close()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class PreloadedPython:
    """The server of one test process, started at its first command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: subprocess.Popen | None = None
        self.environment: dict[str, str] | None = None  # the server's, once started
        self.lock = threading.Lock()

    def start_server(self) -> None:
        folder = tempfile.mkdtemp(prefix="preloaded-python-")
        self.path = os.path.join(folder, "socket")
        self.environment = self.start_environment()
        # Its standard input is the server's lifeline: when this process ends, the pipe closes and the server exits.
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.preloaded_python", self.path], cwd=self.root, env=self.environment,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self.server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the preloaded interpreter did not start (exit status {self.server.wait()})")

    def stop(self) -> None:
        """End the server, as the end of this process would: its standard input closes, and it exits."""
        with self.lock:
            if self.server is None:
                return
            self.server.stdin.close()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server.stdout.close()
            self.server = None

    def can_start(self, env: dict[str, str], popen: dict[str, Any]) -> bool:
        """Whether a fork gives what ``Popen(**popen, env=env)`` would: standard output and error to pipes or to
        file descriptors, no standard input, and the variables read at start-up as the server has them."""
        streams = {"stdout": (None, subprocess.PIPE), "stderr": (None, subprocess.PIPE, subprocess.STDOUT)}
        for name, value in popen.items():
            if name not in streams or not (value in streams[name] or (isinstance(value, int) and value >= 0)):
                return False
        server = self.environment if self.environment is not None else self.start_environment()
        return startup_environment(env) == startup_environment(server)

    @staticmethod
    def start_environment() -> dict[str, str]:
        """The environment a server started now has: this process's, unbuffered as start_cli asks of commands."""
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self, argv: list[str], cwd: Path, env: dict[str, str], **popen: Any) -> Process:
        """``python *argv`` (a script and its arguments, or ``-m module ...``) as a child of the server."""
        with self.lock:
            if self.server is None or self.server.poll() is not None:
                self.start_server()
        opened: list[int] = []  # the write ends this process made, closed once the server has them

        def stream(value: int | None, inherited: int) -> tuple[int | None, int]:
            if value == subprocess.PIPE:
                read, write = os.pipe()
                opened.append(write)
                return read, write
            return None, inherited if value is None else value  # None: this process's own; or a file descriptor

        out_r, out_w = stream(popen.get("stdout"), 1)
        err_r, err_w = (None, out_w) if popen.get("stderr") == subprocess.STDOUT else stream(popen.get("stderr"), 2)
        stdin = os.open(os.devnull, os.O_RDONLY)
        opened.append(stdin)
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            channel.connect(self.path)
            request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode()
            socket.send_fds(channel, [request], [stdin, out_w, err_w])
            reply = channel.recv(MESSAGE)
        finally:
            for fd in opened:
                os.close(fd)
        if not reply:
            raise RuntimeError("the preloaded interpreter did not start the command")
        # Text, as Popen(text=True) reads it; the Process closes them.
        stdout = None if out_r is None else open(out_r, encoding=None)  # noqa: SIM115
        stderr = None if err_r is None else open(err_r, encoding=None)  # noqa: SIM115
        return Process([sys.executable, *argv], json.loads(reply)["pid"], channel, stdout, stderr)


def serve(path: str) -> tuple[dict, list[int]]:
    """Import the libraries, then fork a child for each request; returns (in the child only) its request."""
    for library in LIBRARIES:
        importlib.import_module(library)
    # What the libraries made at import lives as long as the process: the collector of each child need not scan it
    # (nor copy its pages by touching them).
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select(timeout=0.02):
            if key.fileobj is sys.stdin:  # the test process has ended
                os.unlink(path)
                os.rmdir(os.path.dirname(path))
                sys.exit(0)
            channel, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(channel, MESSAGE, 3)
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                for other in children.values():
                    other.close()
                channel.close()
                return json.loads(message), fds
            for fd in fds:
                os.close(fd)
            channel.send(json.dumps({"pid": pid}).encode())
            children[pid] = channel
        while children:  # report the children that have ended
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            channel = children.pop(pid)
            with contextlib.suppress(OSError):  # OSError: the test no longer waits for it
                channel.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
            channel.close()


def become(request: dict, fds: list[int]) -> None:
    """Turn this forked child into ``python <argv>`` as a new interpreter would start it."""
    for fd, standard in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, standard)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as the interpreter sets it at start-up
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    numpy.random.seed()  # a new interpreter's global generator is seeded afresh; Python's random reseeds itself
    first, *rest = request["argv"]
    if first == "-m":
        module, *args = rest
        sys.path[0] = os.getcwd()
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = os.path.realpath(first)
        sys.path[0] = os.path.dirname(script)
        sys.argv = [first, *rest]
        runpy.run_path(first, run_name="__main__")


if __name__ == "__main__":
    # The child leaves serve() with its request and runs the command here, at the top of the stack, so that what
    # ends it (SystemExit, an exception, KeyboardInterrupt) reaches the interpreter as in ``python <script>``.
    become(*serve(sys.argv[1]))
