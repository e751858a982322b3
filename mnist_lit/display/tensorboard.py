"""What TensorBoard shows of a run: the HParams tab's columns and metrics, the config table, the curves layout.

The HParams tab shows the first five hyperparameters and the first five metrics of the
experiment that a run declares, hyperparameters marked as differing first (then by name).
Each run declares the keys that describe it, marking the keys its sweep varies, and the
metrics in the order a reader compares runs by; every job of a sweep declares the same, so
TensorBoard pointed at a sweep's directory shows the swept keys beside the accuracies. The folds of a
cross-validation's setting (``cv=kfold``) are one session group, named in the column ``cv.group``: the
tab shows the setting as one row, its metrics the mean across the folds, each fold a session of it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter, summary
from torch.utils.tensorboard.writer import FileWriter

from mnist_lit.config.settings import FOLD_KEY
from mnist_lit.display.tables import escape_markdown, markdown_table
from mnist_lit.io.atomic import library_writes

# The HParams tab's metrics, in this order, as (run relative to the run's own, tag): the test figures as
# Lightning logged them, the best epoch's validation figures as one point in the sub-run ``best`` (beside
# the validation curves, so the Scalars tab gets no chart of one point; see write_run_summary)
HP_METRICS = (("best", "val/acc"), ("", "test/acc"), ("best", "val/loss"), ("", "test/loss"))
BEST_RUN = "best"
EVENT_FILES = "events.out.tfevents.*"  # what TensorBoard names the files it writes into a run's folder
# metrics.json facts shown as HParams columns beside the hyperparameters (a metric needs a scalar chart)
RUN_FACTS = ("best_epoch", "epochs", "fit_seconds")
# The keys that describe a run besides the model's and the optimizer's own
DESCRIBING = ("data.batch_size", "trainer.precision", "seed", "cv.folds", FOLD_KEY)
# The Custom Scalars tab: train against validation on one chart each
CURVES_LAYOUT = {
    "train vs val": {
        "loss": ["Multiline", ["train/loss", "val/loss"]],
        "accuracy": ["Multiline", ["train/acc", "val/acc"]],
    }
}


class CurvesLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger without the ``epoch`` scalar that Lightning adds to each logging call.

    Its chart, a staircase against the step, would be the first of the Scalars tab (tags sort by name);
    the epochs are in the HParams tab (``run.epochs``) and in ``metrics.json``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: dict[str, int] = {}  # each metric's latest step: where TensorBoard plots its last point

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log every metric but ``epoch``."""
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
        if step is not None:
            self.steps.update(dict.fromkeys(metrics, int(step)))


def metric_info(group: str, tag: str) -> api_pb2.MetricInfo:
    """An HParams metric: the last value of ``tag`` in the run's sub-run ``group`` ("" the run itself)."""
    shown = f"{tag} (best epoch)" if group == BEST_RUN else tag
    return api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag), display_name=shown)


def sweep_params(hydra_cfg: DictConfig) -> list[str]:
    """The config keys the current multirun varies: its sweeper's params and the command line's sweeps.

    A job's own config holds only its values; the command line's sweep syntax (``model.dense=64,128``)
    is in the ``multirun.yaml`` that Hydra writes into the sweep directory before the jobs start. A
    command-line value replaces the sweeper's list for the same key, as it does in Hydra's sweepers.
    """
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return []
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    overrides = [f"{key}={value}" for key, value in params.items()]
    multirun = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    if multirun.is_file():
        overrides += [str(o) for o in OmegaConf.select(OmegaConf.load(multirun), "hydra.overrides.task") or []]
    sweeps: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        sweeps[override.get_key_element().lstrip("+~")] = override.is_sweep_override()
    return [key for key, swept in sweeps.items() if swept]


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _leaves(prefix: str, node: Any) -> dict[str, Any]:
    """``{prefix.key: value}`` for a config node's leaves; keys starting with ``_`` (Hydra's own) left out."""
    if not isinstance(node, dict):
        return {prefix: _scalar(node)}
    found: dict[str, Any] = {}
    for key, value in node.items():
        if not str(key).startswith("_"):
            found.update(_leaves(f"{prefix}.{key}", value))
    return found


def _class_name(node: dict[str, Any]) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def run_hparams(cfg: DictConfig, swept: list[str]) -> dict[str, Any]:
    """The values that describe a run: model, optimizer (and scheduler), batch size, precision, seed, swept keys.

    Not Hydra's ``_target_``s, the data's checksums and mirrors, or paths: they say where, not what.
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    model = {k: v for k, v in plain["model"].items() if k != "name"}  # the name repeats the other keys
    values = _leaves("model", model)
    for group in ("optimizer", "scheduler"):
        node = plain.get(group)
        if node:
            values[group] = _class_name(node)
            values.update(_leaves(group, node))
    for key in DESCRIBING:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            values[key] = _scalar(value)
    for key in swept:
        node = OmegaConf.select(cfg, key)
        if node is not None and not any(part.startswith("_") for part in key.split(".")):
            plain_node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
            values.update(_leaves(key, plain_node))
    return values


def _hparam_info(name: str, value: Any, differs: bool) -> api_pb2.HParamInfo:
    kind = (
        api_pb2.DATA_TYPE_BOOL
        if isinstance(value, bool)
        else api_pb2.DATA_TYPE_FLOAT64
        if isinstance(value, (int, float))
        else api_pb2.DATA_TYPE_STRING
    )
    return api_pb2.HParamInfo(name=name, type=kind, differs=differs)


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """A summary holding HParams plugin data (what tensorboard's own hparams summaries write)."""
    value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return Summary(value=[value])


def _session_start(values: dict[str, Any], group_name: str) -> Summary:
    start = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for name, value in values.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    return _hparams_summary(
        metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)
    )


def config_table(values: dict[str, Any]) -> str:
    """The run's describing values as a Markdown table (escaped: ``kernel_size`` stays as written)."""
    rows = [[escape_markdown(k), escape_markdown(v)] for k, v in sorted(values.items())]
    return markdown_table(["key", "value"], rows)


def write_curves_layout(run_dir: Path) -> None:
    """The Custom Scalars tab's layout: train and validation loss on one chart, accuracy on another."""
    writer = FileWriter(str(run_dir))
    writer.add_summary(summary.custom_scalars(CURVES_LAYOUT))
    writer.close()


def write_run_summary(run_dir: Path, cfg: DictConfig, swept: list[str], metrics: dict[str, Any]) -> dict[str, Any]:
    """The run's HParams entry (declared columns, values, metrics) and its config table; returns the values.

    The Scalars tab groups charts by tag prefix in alphabetical order, so every scalar tag with a new
    prefix would come before ``train/`` and ``val/``: the best epoch's ``val/acc`` and ``val/loss`` go into
    the sub-run ``best`` at that epoch's step (a marked point on the validation curves), the run's facts
    (``best_epoch``, ``epochs``, ``fit_seconds``) into HParams columns, and no scalar of its own.
    """
    values = run_hparams(cfg, swept)
    facts = {f"run.{key}": metrics[key] for key in RUN_FACTS if isinstance(metrics.get(key), (int, float))}
    differing = {k for k in values if any(k == s or k.startswith(f"{s}.") for s in swept)}
    # group_name: the run's own directory, so that two runs with the same values stay two rows; a setting's folds
    # share one (its sweep's directory and the values that differ but the fold), so they are one row
    group = run_dir.name
    if FOLD_KEY in swept:
        setting = " ".join(f"{k}={v}" for k, v in values.items() if k in differing and k != FOLD_KEY)
        group = values["cv.group"] = f"{run_dir.parent.name} {setting}".strip()
        differing.add("cv.group")
    step = int(metrics.get("epochs") or 0)
    writer = FileWriter(str(run_dir))
    infos = [_hparam_info(name, value, name in differing) for name, value in {**values, **facts}.items()]
    metric_infos = [metric_info(group, tag) for group, tag in HP_METRICS]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos, time_created_secs=time.time())
    writer.add_summary(
        _hparams_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))
    )
    writer.add_summary(_session_start({**values, **facts}, group_name=group))
    best = next((r for r in metrics.get("history", []) if r.get("epoch") == metrics.get("best_epoch")), None)
    if best is not None and "step" in best:
        best_writer = FileWriter(str(run_dir / BEST_RUN))
        for key in ("val/acc", "val/loss"):
            if isinstance(metrics.get(key), (int, float)):
                best_writer.add_summary(summary.scalar(key, float(metrics[key])), int(best["step"]))
        best_writer.close()
    writer.add_summary(summary.text("hyperparameters", config_table(values)), step)
    tested = metrics.get("test/acc") is not None  # not tested: diverged or interrupted
    end = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_SUCCESS if tested else api_pb2.STATUS_FAILURE, end_time_secs=time.time()
    )
    writer.add_summary(
        _hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))
    )
    writer.close()
    return values


def log_report(run_dir: Path, report_dir: Path, split: str, text: str, step: int) -> None:
    """The confusion matrix, the misclassified grid and the classification report, beside the run's scalars."""
    with library_writes(run_dir / EVENT_FILES), SummaryWriter(str(run_dir)) as writer:
        for name in ("confusion_matrix", "misclassified"):
            image = np.asarray(Image.open(report_dir / f"{name}.png").convert("RGB"))
            writer.add_image(f"{split}/{name}", image, step, dataformats="HWC")
        # Four leading spaces: TensorBoard renders text as Markdown, and this keeps the columns aligned.
        writer.add_text(f"{split}/classification_report", "\n".join(f"    {line}" for line in text.splitlines()), step)
