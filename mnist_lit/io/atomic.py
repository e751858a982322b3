"""Writing outputs so that nothing is ever half-written: a temporary file in the same folder, fsync, rename.

Every file the project writes goes through ``atomic_file`` (``write_text`` for text), and a folder written whole
(the evaluation report) through ``atomic_dir``: a reader, a run killed at any moment or a full disk sees the
previous file or folder or the new one, never part of one. What libraries write themselves (TensorBoard's event
files, Lightning's) is called inside ``library_writes``: a full disk ends in the same one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mnist_lit.errors import OutputError, UserError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a full disk, an exhausted quota, a file-size limit


def name_error(path: Path) -> str | None:
    """Why this system cannot hold a file or folder at ``path`` by its name alone (too long), or None."""
    limit = 255  # bytes of one name on Linux, macOS and Windows file systems
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            return f"the name {part[:20]}... is {size} bytes long, more than the {limit} a name can have"
    return None


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot be created or written to, or None if it can."""
    if too_long := name_error(directory):
        return too_long
    existing = next((p for p in (directory, *directory.parents) if p.exists()), directory)
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    return None if os.access(existing, os.W_OK | os.X_OK) else f"{existing} is not writable"


def sync_dir(directory: Path) -> None:
    """fsync a folder, so that a rename in it survives a power cut (a no-op where folders cannot be opened or synced:
    Windows, whose renames are journaled, and some network file systems)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def out_of_space(error: BaseException | None) -> OSError | None:
    """The out-of-space OSError behind ``error``, if any (torch.save wraps it in a RuntimeError, for one)."""
    while error is not None and not (isinstance(error, OSError) and error.errno in NO_SPACE):
        error = error.__cause__ or error.__context__
    return error


def raise_no_space(error: BaseException, path: Path) -> None:
    """If ``error`` is a write that ran out of space, raise the OutputError saying what was kept and what to do."""
    full = out_of_space(error)
    if full is not None:
        raise OutputError(
            f"could not write {path}: {full.strerror or full} (disk full or file size limit). "
            f"The previous {path.name}, if any, is unchanged. Free some space and run the command again."
        ) from error


@contextlib.contextmanager
def library_writes(path: Path) -> Iterator[None]:
    """Around what a library writes itself (``path``: TensorBoard's event files, written by its own thread, which
    raises their error again in the caller's; Lightning's): a write that runs out of space ends in the OutputError
    that ``atomic_file`` gives, and the thread's traceback is not printed."""
    hook = threading.excepthook
    threading.excepthook = lambda args: None if out_of_space(args.exc_value) else hook(args)
    try:
        yield
    except Exception as e:
        if not isinstance(e, UserError):  # a UserError: the atomic writer's own (a checkpoint's)
            raise_no_space(e, path)
        raise
    finally:
        threading.excepthook = hook


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "w", verify: Callable[[Path], None] | None = None, **kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (its folder made if need be); on success fsync it, ``verify(tmp)`` it
    (a last check: raising keeps the previous file), and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with open(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        raise_no_space(e, path)
        raise
    sync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block has run, then act on them as usual: the handlers are swapped for
    ones that note the signal, raised again once the usual handlers are back (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(noted):
            signal.raise_signal(s)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """An empty folder beside ``target`` to write a folder's files into; on success ``verify(tmp)`` it (raising keeps
    the previous folder), fsync its files and put it in ``target``'s place whole; on failure it is removed.

    Ctrl-C and SIGTERM wait until both renames are done; between them a kill (SIGKILL, a power cut) leaves the
    previous folder beside ``target`` as ``.<name>.old-<pid>``: nothing is lost, no reader sees half a folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        yield tmp
        if verify is not None:
            verify(tmp)
        for file in tmp.iterdir():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        sync_dir(tmp)
        with signals_held():  # a signal between the renames would leave neither folder in place
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            sync_dir(target.parent)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_no_space(e, target)
        raise
