"""Which existing outputs a command may replace: its own earlier ones, recognised by what it wrote into them.

Each kind of output (a predictions CSV, an ONNX export, a report folder, a sweep's summary files) is an
``Owned``: what a refusal calls it and how an existing one is recognised. Anything else at its path is
someone else's and is never replaced. A command checks its output's path before it starts (``check``:
one ``Error:`` line naming the setting and what is in the way); its writer (``written``, the atomic
writer of mnist_lit/io/atomic.py) checks again just before its rename, so that a file put there while
the command ran is kept too.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_lit.errors import ConfigError, OutputError
from mnist_lit.io.atomic import atomic_dir, atomic_file, unwritable_reason


@dataclass(frozen=True)
class Owned:
    """One kind of output of the project, a file or (``folder``) a folder of files written and replaced whole."""

    what: str  # an earlier one, as a refusal names it: "a predictions CSV of this command"
    recognise: Callable[[Path], bool]  # whether an existing file (or folder) is an earlier one
    example: str = ""  # a name for one, as a refusal suggests it: "predictions.csv"
    folder: bool = False

    def replaceable(self, path: Path) -> bool:
        """Whether this output may go to ``path``: nothing is there, an empty folder (for a folder), or an earlier
        one. Anything else is someone else's."""
        if not path.exists():
            return True
        if path.is_dir() != self.folder:
            return False
        return (self.folder and not any(path.iterdir())) or self.recognise(path)

    def check(self, setting: str, path: Path) -> Path:
        """``path``, where ``setting`` (``output='m.onnx'``) puts this output, if it may go there; else ConfigError
        naming the setting and what is in the way, or why nothing can be written there."""
        noun = "folder" if self.folder else "file"
        if path.is_dir() and not self.folder:
            example = f", e.g. {path / self.example}" if self.example else ""
            raise ConfigError(f"{setting} is not allowed: it is a folder. Give a file name{example}")
        if path.exists() and not path.is_dir() and self.folder:
            raise ConfigError(f"{setting} is not allowed: it is a file. Give a folder name that does not exist yet")
        if not self.replaceable(path):
            there = "that folder holds files that are not" if self.folder else "that file exists and is not"
            raise ConfigError(
                f"{setting} is not allowed: {there} {self.what}, so {'they' if self.folder else 'it'} would be lost. "
                f"Give a new {noun} name"
            )
        reason = unwritable_reason(path.absolute().parent)
        if reason:
            raise ConfigError(f"{setting} cannot be written: {reason}. Give a {noun} in a writable place")
        return path

    def written(
        self, path: Path, mode: str = "w", verify: Callable[[Path], None] | None = None, **kwargs: Any
    ) -> AbstractContextManager[Any]:
        """The atomic writer of this output at ``path``: ``atomic_file``'s open file, or for a folder ``atomic_dir``'s
        empty folder to fill (``mode`` and ``kwargs`` are the file's). Whatever is at ``path`` by the rename and is
        not replaceable is kept, and OutputError says so."""

        def checked(tmp: Path) -> None:
            if verify is not None:
                verify(tmp)
            if not self.replaceable(path):
                raise OutputError(
                    f"{path} is not replaced: it is not {self.what}. Move it aside, or give another name, and run "
                    "the command again"
                )

        if self.folder:
            return atomic_dir(path, verify=checked)
        return atomic_file(path, mode, verify=checked, **kwargs)
