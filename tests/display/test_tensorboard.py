"""What TensorBoard shows: a run's report images and text, and a sweep's runs with their scalars and HParams,
read back by TensorBoard itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import job_dirs, job_metrics, stop_server


def test_tensorboard_holds_the_report_images_and_text(evaluated_run):
    events = EventAccumulator(str(evaluated_run["dir"]), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"test/confusion_matrix", "test/misclassified"} <= set(tags["images"])
    assert "test/classification_report/text_summary" in tags["tensors"]
    text = events.Tensors("test/classification_report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "macro avg" in text and "weighted avg" in text
    assert "test/acc" in tags["scalars"]  # beside the training scalars


# What says where a run's data came from, not what the run was: never an HParams column.
EXCLUDED = ("_target_", "checksums", "mirrors", "data_dir", "log_dir", "dir")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_tensorboard_lists_every_run_with_its_scalars_and_hyperparameters(grid):
    sweep_dir, _ = grid
    runs = {d.name for d in job_dirs(sweep_dir)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep_dir)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # TensorBoard answers before it has read every event file: poll until it lists them all.
        deadline, tags, last_error = time.monotonic() + 90, {}, None
        while time.monotonic() < deadline:
            assert server.poll() is None, f"tensorboard exited: {server.stderr.read()[-2000:]}"
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
                best_runs = {f"{run}/best" for run in runs}
                if set(tags) == runs | best_runs and all("test/acc" in tags[run] for run in runs):
                    break
            except OSError as e:
                last_error = e
            time.sleep(1)
        assert set(get_json(f"{base}/data/runs")) == runs | best_runs, last_error
        for run in runs:  # the Scalars tab: the curves and the test figures, nothing that sorts before them
            assert set(tags[run]) == {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"}
            assert set(tags[f"{run}/best"]) == {"val/loss", "val/acc"}  # a point on the validation curves
        # The HParams tab: one session per run, with its swept values and final accuracies.
        request = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"], "colParams": []}
        groups = get_json(f"{base}/data/plugin/hparams/session_groups", {**request, "startIndex": 0, "sliceSize": 100})
        sessions = {g["name"]: g for g in groups["sessionGroups"]}
        assert set(sessions) == runs
        for run, group in sessions.items():
            expected = job_metrics(sweep_dir / run)
            values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"] for m in group["metricValues"]}
            assert values["best", "val/acc"] == pytest.approx(expected["val/acc"], rel=1e-5)
            assert values["", "test/acc"] == pytest.approx(expected["test/acc"], rel=1e-5)
            assert group["hparams"]["run.epochs"] == expected["epochs"]
            assert f"_cnn_f{int(group['hparams']['model.filters'])}_" in run
            assert f"_d{int(group['hparams']['model.dense'])}_" in run
            assert {"model.kernel_size", "optimizer.lr", "data.batch_size", "trainer.precision", "seed"} <= set(
                group["hparams"]
            )
            assert not [k for k in group["hparams"] if any(word in k for word in EXCLUDED)], group["hparams"]
        # The tab's columns: the swept keys first (marked as differing), then the accuracies.
        experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = [info["name"] for info in experiment["hparamInfos"]]
        differing = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
        assert differing == ["model.dense", "model.filters"], differing  # kernel_size was fixed on the command line
        assert names[:2] == differing
        assert not [k for k in names if any(word in k for word in EXCLUDED)], names
        metric_names = [info["displayName"] for info in experiment["metricInfos"]]
        assert metric_names[:2] == ["val/acc (best epoch)", "test/acc"], metric_names
        # The Text tab's table is escaped Markdown: underscores stay underscores, not italics.
        run = sorted(runs)[0]
        text = get_json(f"{base}/data/plugin/text/text?run={run}&tag=hyperparameters/text_summary")[0]["text"]
        assert "model.kernel_size" in text and "<em>" not in text, text[:500]
        # The Custom Scalars tab: train against validation on one chart each.
        layout = json.dumps(get_json(f"{base}/data/plugin/custom_scalars/layout"))
        for tag in ("train/loss", "val/loss", "train/acc", "val/acc"):
            assert tag in layout, layout
    finally:
        stop_server(server, timeout=20)
        server.stderr.close()  # not left to the collector, which would warn inside a later test's command
