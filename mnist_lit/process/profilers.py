"""``NullProfiler``: Lightning's "no profiling" default, at a fraction of its per-hook cost."""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_NO_OP = contextlib.nullcontext()


class NullProfiler(PassThroughProfiler):
    """Profiles nothing, like Lightning's ``PassThroughProfiler``, with one shared no-op context.

    Lightning wraps every hook call, on every callback, in ``trainer.profiler.profile(...)``.
    ``PassThroughProfiler`` builds a generator-based context manager each time, some 25 of them an
    optimizer step with six callbacks (benchmarks/README.md has the cost). The trainer config
    selects this class; ``trainer.profiler=simple`` (or ``advanced``, ``pytorch``) selects one of
    Lightning's real profilers instead.
    """

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return _NO_OP
