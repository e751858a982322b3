"""Threads and processes: DDP only where it can start its ranks, and a DDP run on the CPU."""

from __future__ import annotations

import pytest

from mnist_lit.errors import ConfigError
from mnist_lit.process.parallel import check_ddp_launch
from tests.conftest import TINY, composed, job_metrics, run_process, synthetic_overrides


def test_ddp_is_refused_in_a_local_multirun_but_not_in_a_run_or_under_slurm(monkeypatch):
    cfg = composed("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    check_ddp_launch(cfg, multirun=False)
    # Lightning would start rank 1 as `python train.py -m <the whole sweep>`
    with pytest.raises(ConfigError, match=r"trainer.strategy='ddp' is not allowed in a local multirun"):
        check_ddp_launch(cfg, multirun=True)
    check_ddp_launch(composed("trainer=cpu"), multirun=True)
    monkeypatch.setenv("SLURM_NTASKS", "2")  # srun starts the ranks
    check_ddp_launch(cfg, multirun=True)


def test_ddp_on_cpu_trains_one_model_into_one_run_directory(synthetic, tmp_path):
    done = run_process(  # its own process: rank 0 joins a process group for the rest of its life
        "train.py",
        *synthetic_overrides(synthetic),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        f"paths.log_dir={tmp_path}",  # no hydra.run.dir: each process would otherwise pick its own timestamp
    )
    output = done.stdout + done.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in output and "cpu x2" in done.stdout.splitlines()[0]
    assert "sync_dist=True" not in output  # torchmetrics reduces the epoch metrics across processes
    (run_dir,) = (tmp_path / "runs" / "mlp_h128_s42").iterdir()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mlp_h128_s42"]
    assert job_metrics(run_dir)["epochs"] == 1 and len(list(run_dir.rglob("metrics.json"))) == 1
    assert len(list(run_dir.rglob(".hydra"))) == 1
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1  # the process id in the file names: only rank 0 writes TensorBoard events
    # rank 1 logs to its own file, and only warnings
    rank_log = run_dir / "train_ddp_process_1.log"  # opened by the rank's first line: none at INFO
    assert not rank_log.exists() or "INFO" not in rank_log.read_text()
    assert output.count("400 training, 100 validation and 200 test images") == 1
