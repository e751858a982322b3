"""mnist_lit/loggers.py and conf/logger/: with ``logger=[tensorboard,csv,mlflow]`` each logger holds the figures of
metrics.json at the same steps and the same hyperparameters, read back through its own reader (TensorBoard's event
reader, the CSV file, MLflow's client and its tracking server); MLflow keeps the run's files; commands at once log
every run and job; bad logger settings are refused before anything is written."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata, plugin_data_pb2

from mnist_lit.config.checks import check_logger_usable
from mnist_lit.display.tensorboard import CurvesLogger
from mnist_lit.training import build
from tests.conftest import (
    REPORT_FILES,
    assert_refused,
    compose_train,
    job_dirs,
    run_cli,
    start_cli,
    synthetic_overrides,
)

LOGGERS = "logger=[tensorboard,csv,mlflow]"
EPOCHS = 2
# MLflow sends usage figures from each process that imports it, unless told not to (it is imported by the tests)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def store_uri(logs: Path) -> str:
    return f"sqlite:///{logs / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tracked(synthetic, tmp_path_factory) -> dict:
    """A 2-epoch run logged to TensorBoard, a CSV file and MLflow (the default SQLite store), evaluated after fit."""
    base = tmp_path_factory.mktemp("tracked")
    run_dir, logs = base / "run", base / "logs"
    run_cli("train.py", *synthetic_overrides(synthetic), LOGGERS, f"hydra.run.dir={run_dir}", f"paths.log_dir={logs}",
            f"trainer.max_epochs={EPOCHS}", "model.hidden=16", "evaluate_after_fit=true")  # fmt: skip
    client = mlflow_client(store_uri(logs))
    experiment = client.get_experiment_by_name("mnist_lit")
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"dir": run_dir, "logs": logs, "client": client, "run": run, "metrics": metrics}


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def csv_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tags = [key for key in rows[0] if key not in ("step", "epoch")]
    return {tag: [(int(r["step"]), float(r[tag])) for r in rows if r[tag]] for tag in tags}


def mlflow_scalars(tracked: dict) -> dict[str, list[tuple[int, float]]]:
    run_id, client = tracked["run"].info.run_id, tracked["client"]
    return {
        tag: [(m.step, m.value) for m in client.get_metric_history(run_id, tag)] for tag in tracked["run"].data.metrics
    }


def test_every_logger_holds_the_figures_of_metrics_json_at_the_same_steps(tracked):
    metrics = tracked["metrics"]
    expected = {tag: [(r["step"], r[tag]) for r in metrics["history"]] for tag in ("val/acc", "val/loss", "train/loss")}
    assert len(expected["val/acc"]) == EPOCHS
    for scalars in (tensorboard_scalars(tracked["dir"]), csv_scalars(tracked["dir"]), mlflow_scalars(tracked)):
        for tag, points in expected.items():
            assert [step for step, _ in scalars[tag]] == [step for step, _ in points], tag
            assert [value for _, value in scalars[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag
        (test_step, test_acc), *_ = scalars["test/acc"]
        assert len(scalars["test/acc"]) == 1 and test_acc == pytest.approx(metrics["test/acc"], rel=1e-6)
        assert test_step == metrics["steps"]


def tensorboard_hparams(run_dir: Path) -> dict:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in values.items()}


def test_every_logger_gets_the_same_hyperparameters(tracked):
    from_csv = yaml.safe_load((tracked["dir"] / "hparams.yaml").read_text())
    assert from_csv["model.hidden"] == 16 and from_csv["optimizer"] == "Adam" and from_csv["seed"] == 42
    # TensorBoard's HParams entry adds the run's facts (run.epochs, ...) as columns
    assert {k: v for k, v in tensorboard_hparams(tracked["dir"]).items() if not k.startswith("run.")} == from_csv
    assert tracked["run"].data.params == {key: str(value) for key, value in from_csv.items()}


def test_mlflow_keeps_the_run_its_name_and_its_files(tracked):
    run, client, run_dir = tracked["run"], tracked["client"], tracked["dir"]
    assert run.info.run_name == "mlp_h16_s42" and run.info.status == "FINISHED"
    assert run.data.tags["run_dir"] == str(run_dir)
    # the files go beside the store, not into the working directory's mlruns/
    assert Path(run.info.artifact_uri).is_relative_to(tracked["logs"] / "mlartifacts")
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert listed == {"metrics.json", "checkpoints", "report"}
    report = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report")}
    assert report == {p.name for p in (run_dir / "report").iterdir()} and report >= set(REPORT_FILES)
    kept = Path(run.info.artifact_uri)
    for name in ("metrics.json", "checkpoints/best.ckpt", "report/classification_report.json"):
        assert (kept / name).read_bytes() == (run_dir / name).read_bytes(), name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def mlflow_server(logs: Path, cwd: Path) -> Iterator[str]:
    """``mlflow server`` on the store in ``logs``, on a free port of 127.0.0.1; its address once it answers."""
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner processes
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri(logs),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"mlflow server exited: {server.stderr.read()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not answer"
                time.sleep(0.5)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_commands_at_once_log_every_run_and_job_and_mlflow_server_shows_them(synthetic, tmp_path):
    """A sweep of two jobs and a run, started at once on a new SQLite store (whose tables and experiment MLflow
    makes once): an MLflow run for each job and the run; ``mlflow server`` on that store lists them over HTTP."""
    sweep, single, logs = tmp_path / "sweep", tmp_path / "run", tmp_path / "logs"
    common = (*synthetic_overrides(synthetic), "logger=[csv,mlflow]", "trainer.max_epochs=1", f"paths.log_dir={logs}")
    commands = [
        start_cli("train.py", "-m", *common, "model.hidden=8,16", f"hydra.sweep.dir={sweep}"),
        start_cli("train.py", *common, "model.hidden=32", f"hydra.run.dir={single}"),
    ]
    for command in commands:
        _, stderr = command.communicate(timeout=600)
        assert command.returncode == 0, stderr[-3000:]
    runs = [*job_dirs(sweep), single]
    assert all((run / "metrics.csv").is_file() for run in runs)
    with mlflow_server(logs, tmp_path) as address:
        api = f"{address}/api/2.0/mlflow"
        found = get_json(f"{api}/experiments/search?max_results=10")["experiments"]
        experiment = next(e["experiment_id"] for e in found if e["name"] == "mnist_lit")
        logged = post_json(f"{api}/runs/search", {"experiment_ids": [experiment]})["runs"]
        check_logger_usable({"_target_": "lightning.pytorch.loggers.MLFlowLogger", "tracking_uri": address}, "l")
    by_dir = {}
    for run in logged:
        data = {kind: {e["key"]: e["value"] for e in run["data"][kind]} for kind in ("tags", "params", "metrics")}
        by_dir[data["tags"]["run_dir"]] = data
    assert set(by_dir) == {str(run) for run in runs}
    for run, hidden in zip(runs, (8, 16, 32), strict=True):
        data = by_dir[str(run)]
        # named as the run's folder in logs/runs/ (run_name), a job as its own folder (0_mlp_h8_s42)
        assert data["tags"]["mlflow.runName"] == (run.name if run != single else f"mlp_h{hidden}_s42")
        assert data["params"]["model.hidden"] == str(hidden)
        assert data["metrics"]["test/acc"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test/acc"])


def test_no_logger_or_one_switched_off(synthetic, tmp_path):
    cases = ((["~logger"], []), (["logger=[]"], []), (["logger=[tensorboard,csv]", "logger.csv=null"], [CurvesLogger]))
    for overrides, kept in cases:
        cfg = compose_train(*synthetic_overrides(synthetic), *overrides, f"hydra.run.dir={tmp_path}")
        assert [type(logger) for logger in build(cfg)[2].loggers] == kept


@pytest.fixture
def silent_port():
    """A port that takes connections and never answers them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("case", ["unknown", "null", "refused", "silent", "wandb", "unknown -m", "refused -m"])
def test_bad_logger_settings_are_refused_before_anything_is_written(case, synthetic, tmp_path, silent_port):
    case, _, sweep = case.partition(" ")
    args, expected = {
        "unknown": (["logger=[tensorboard,nope]"], "logger=nope is not allowed: choose from csv, mlflow, tensorboard"),
        "null": (["logger=null"], "logger=null is not allowed: a config group is left out with ~logger"),
        "refused": ([LOGGERS, f"logger.mlflow.tracking_uri=http://127.0.0.1:{free_port()}"], "cannot be reached"),
        "silent": ([LOGGERS, f"logger.mlflow.tracking_uri=http://127.0.0.1:{silent_port}"], "cannot be reached"),
        "wandb": (["logger=[mlflow,wandb]"], "logger.wandb needs wandb, which is not installed: pip install wandb"),
    }[case]
    if case == "wandb" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    logs = tmp_path / "logs"
    started = time.monotonic()
    multirun = ["-m", "seed=1,2"] if sweep else []  # a sweep: refused before its first job
    done = run_cli("train.py", *multirun, *synthetic_overrides(synthetic), f"paths.log_dir={logs}", *args, check=False)
    assert_refused(done, expected)
    assert time.monotonic() - started < 60  # not MLflow's minutes of retries
    assert not logs.exists()  # no run directory, no MLflow store
