"""``perf=fast``: an opt-in training path that trades some of Lightning's per-step machinery for speed.

Lightning fetches ``data.steps_per_fetch`` batches at once and the module takes that many
optimizer steps per ``training_step`` under manual optimisation, skipping the automatic loop's
per-batch closure and hooks. The optimizer sees exactly the batches, in the same order, as on
the default path, so a seed gives the same metrics. What it cannot honour (gradient clipping,
accumulation, batch-counted Trainer limits and intervals, callbacks with per-batch hooks) is
refused before training by :func:`mnist_lit.perf.checks.check_fast_config`.
"""

from mnist_lit.perf.data import FetchingMNISTDataModule
from mnist_lit.perf.module import FastDigitClassifier

__all__ = ["FastDigitClassifier", "FetchingMNISTDataModule"]
