"""``trainer.precision=auto``: bf16 where the device runs it natively, else float32; explicit choices kept."""

from __future__ import annotations

import json

import pytest
import torch

from mnist_lit.config.checks import check_config
from mnist_lit.precision import (
    Choice,
    choose_precision,
    cpu_device,
    cuda_device,
    precision_for,
    resolved,
    training_device,
)
from tests.conftest import BATCHES_PER_EPOCH, compose_train, run_cli, synthetic_overrides, train_recorded

AVX2 = {"architecture": "x86_64", "avx": True, "avx2": True, "avx512_f": False, "avx512_bf16": False}
AVX512_BF16 = {**AVX2, "avx512_f": True, "avx512_bf16": True}
SAPPHIRE_RAPIDS = {**AVX512_BF16, "amx_bf16": True, "amx_fp16": False, "avx512_fp16": True}


def test_auto_picks_bf16_only_where_it_is_native():
    assert choose_precision("auto", cpu_device(AVX2)).precision == "32-true"
    assert choose_precision("auto", cpu_device(AVX512_BF16)).precision == "bf16-mixed"
    assert choose_precision("auto", cpu_device(SAPPHIRE_RAPIDS)).precision == "bf16-mixed"
    assert choose_precision("auto", cuda_device((8, 0))).precision == "bf16-mixed"
    assert choose_precision("auto", cuda_device((9, 0))).precision == "bf16-mixed"
    assert choose_precision("auto", cuda_device((7, 5))).precision == "32-true"


def test_auto_says_why():
    reason = choose_precision("auto", cpu_device(AVX2)).reason
    assert reason == "bf16 is not native on this CPU (AVX2, no AVX512_BF16 or AMX-BF16)"
    assert choose_precision("auto", cpu_device(SAPPHIRE_RAPIDS)).reason == (
        "bf16 is native on this CPU (AVX512_BF16 and AMX-BF16)"
    )
    assert choose_precision("auto", cuda_device((7, 5))).reason == "bf16 is not native on CUDA compute capability 7.5"


@pytest.mark.parametrize("requested", ["bf16-mixed", "bf16-true", "bf16"])
def test_explicit_bf16_is_kept_with_a_warning_where_it_is_emulated(requested):
    slow = choose_precision(requested, cpu_device(AVX2))
    assert slow.precision == requested
    assert slow.warning == (
        f"trainer.precision={requested} will be slow: bf16 is not native on this CPU (AVX2, no AVX512_BF16 or "
        "AMX-BF16), so it is emulated; trainer.precision=auto picks 32-true here"
    )
    assert "compute capability 7.5" in choose_precision(requested, cuda_device((7, 5))).warning
    for native in (cpu_device(AVX512_BF16), cuda_device((8, 6))):
        assert choose_precision(requested, native) == Choice(requested, "as set", None)


def test_float16_only_when_asked_and_warned_on_a_cpu():
    for device in (cpu_device(AVX2), cpu_device(AVX512_BF16), cuda_device((8, 0)), cuda_device((7, 0))):
        assert choose_precision("auto", device).precision != "16-mixed"
    assert "picks 32-true here" in choose_precision("16-mixed", cpu_device(AVX2)).warning
    assert "picks bf16-mixed here" in choose_precision("16-mixed", cpu_device(AVX512_BF16)).warning
    assert choose_precision("16-mixed", cpu_device(SAPPHIRE_RAPIDS)).warning is None  # AVX512_FP16
    assert choose_precision("16-mixed", cuda_device((7, 0))).warning is None
    for precision in ("32-true", "64-true", "32"):
        assert choose_precision(precision, cpu_device(AVX2)).warning is None


@pytest.mark.parametrize("capabilities, expected", [(AVX2, "32-true"), (AVX512_BF16, "bf16-mixed")])
def test_a_preset_asks_for_auto_and_gets_what_the_cpu_runs(monkeypatch, capabilities, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert training_device("auto").kind == "cpu"
    for preset in ("experiment=cnn_best", "experiment=cnn_best_ema", "experiment=speedrun"):
        cfg = compose_train(preset)
        assert cfg.trainer.precision == "auto"
        assert precision_for(cfg).precision == expected
    assert resolved("auto", torch.device("cpu")) == expected  # what evaluate.py applies to such a run
    assert resolved("16-mixed", torch.device("cpu")) == "16-mixed"
    assert precision_for(compose_train("model=cnn")).precision == "32-true"  # the default stays float32


def test_auto_on_a_gpu_reads_its_compute_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, expected in (((8, 9), "bf16-mixed"), ((7, 5), "32-true")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_, c=capability: c)
        assert precision_for(compose_train("experiment=speedrun")).precision == expected
    # trainer=cpu trains on the CPU even where there is a GPU
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: AVX2)
    assert precision_for(compose_train("experiment=speedrun", "trainer=cpu")).precision == "32-true"


def test_auto_is_an_accepted_precision():
    check_config(compose_train("trainer.precision=auto"))


def test_the_first_line_says_what_auto_chose_and_why(synthetic, tmp_path):
    """The real CLI on this machine: the first line names the precision that its CPU's capabilities call for."""
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=1",
                   "trainer.accelerator=cpu", "trainer.precision=auto")  # fmt: skip
    device = cpu_device(torch.cpu.get_capabilities())
    expected = choose_precision("auto", device)
    first = done.stdout.splitlines()[0]
    assert f"precision {expected.precision}, " in first and first.endswith(f"; precision auto: {expected.reason}")
    assert "Warning" not in done.stdout + done.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"] == expected.precision


def test_bf16_mixed_precision_trains(synthetic, tmp_path):
    run_dir, record, done = train_recorded(synthetic, tmp_path, "trainer.precision=bf16-mixed", "trainer.max_epochs=2")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # an explicit precision is honoured; where this CPU emulates bf16, one line says so
    warning = choose_precision("bf16-mixed", cpu_device(torch.cpu.get_capabilities())).warning
    assert (f"Warning: {warning}" in done.stdout + done.stderr) if warning else "Warning" not in done.stdout
    assert metrics["precision"] == "bf16-mixed"
    assert record["global_step"] == 2 * BATCHES_PER_EPOCH and metrics["test/acc"] > 0.5
    assert record["final"]["1.weight"].dtype == torch.float32  # autocast: the weights stay fp32
