"""ONNX export: onnxruntime's logits match the checkpoint's for every architecture; bad input is refused."""

from __future__ import annotations

import copy
import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torchvision.datasets import MNIST

from mnist_lit import export
from mnist_lit.checkpoints import load_classifier
from mnist_lit.config.checks import PROJECT_ROOT, command_config
from mnist_lit.data.mnist import DATASET
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.inference import logits_of
from tests.conftest import MODELS, run_cli, train_checkpoint


@pytest.fixture(scope="module")
def checkpoints(synthetic, tmp_path_factory) -> dict:
    """One small trained checkpoint per architecture."""
    base = tmp_path_factory.mktemp("export")
    return {name: train_checkpoint(synthetic, base / f"{name}.ckpt", model) for name, model in MODELS.items()}


def export_config(ckpt, output, synthetic, **values):
    return command_config(
        "export", ckpt_path=str(ckpt), output=str(output), data_dir=str(synthetic["data_dir"]), **values
    )


def synthetic_test_images(synthetic) -> tuple[torch.Tensor, torch.Tensor]:
    test = MNIST(synthetic["data_dir"], train=False)
    return test.data, test.targets


def run_onnx(path, images: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images[:, None].numpy()})[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_reads_the_images_as_the_checkpoint_does(name, checkpoints, synthetic, tmp_path, capsys):
    output = tmp_path / "models" / f"{name}.onnx"  # a folder that does not exist yet is created
    parity = export.export_onnx(export_config(checkpoints[name], output, synthetic, check_images=150))
    printed = capsys.readouterr().out
    assert parity.images == 150 and parity.within_tolerance and parity.same_digits == 150
    assert f"max |logit difference| {parity.max_difference:.2e}" in printed
    assert "the same digit for 150 of 150" in printed and f"ONNX opset {export.OPSET}" in printed
    assert [p.name for p in output.parent.iterdir()] == [output.name]  # no temporary file left beside it

    # Independently of the command's own check: the project's evaluation path (normalise, then the
    # network, in eval mode) on the 200 synthetic test images, against onnxruntime at two batch sizes.
    images, labels = synthetic_test_images(synthetic)
    expected = logits_of(load_classifier(str(checkpoints[name])), images).numpy()
    batched = run_onnx(output, images)
    one = np.concatenate([run_onnx(output, images[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batched, expected, rtol=export.RTOL, atol=export.ATOL)
    np.testing.assert_allclose(one, expected[:5], rtol=export.RTOL, atol=export.ATOL)
    assert (batched.argmax(1) == expected.argmax(1)).all()
    assert (batched.argmax(1) == labels.numpy()).mean() > 0.3  # a trained model (chance: 0.1)

    model = onnx.load(output)
    onnx.checker.check_model(model)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain == ""] == [("", export.OPSET)]
    (given,) = model.graph.input
    assert given.name == "images" and given.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = given.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # a named, dynamic batch axis
    props = {p.key: p.value for p in model.metadata_props}
    assert props[export.EXPORT_KEY] == export.FORMAT_VERSION
    assert props["mnist_lit.checkpoint"] == str(checkpoints[name])


def test_compiled_and_contiguous_checkpoints_export_the_same_network(checkpoints, synthetic, tmp_path):
    """``model.compile=true`` (compiled in place, same weights) and ``channels_last=false`` export the same logits."""
    checkpoint = torch.load(checkpoints["cnn"], weights_only=True)
    images, _ = synthetic_test_images(synthetic)
    reference = run_onnx_of(checkpoints["cnn"], synthetic, tmp_path / "reference.onnx", images)
    for key, value in (("compile", True), ("channels_last", False)):
        variant, changed = tmp_path / f"{key}.ckpt", copy.deepcopy(checkpoint)
        changed["hyper_parameters"]["model"][key] = value
        torch.save(changed, variant)
        assert load_classifier(str(variant)).hparams.model[key] == value
        got = run_onnx_of(variant, synthetic, tmp_path / f"{key}.onnx", images)
        np.testing.assert_allclose(got, reference, rtol=export.RTOL, atol=export.ATOL)


def run_onnx_of(ckpt, synthetic, output, images) -> np.ndarray:
    parity = export.export_onnx(export_config(ckpt, output, synthetic, check_images=50))
    assert parity.within_tolerance and parity.digits_agree
    return run_onnx(output, images)


@pytest.mark.skipif(
    not (DATASET.raw_dir(PROJECT_ROOT / "data") / "t10k-images-idx3-ubyte").is_file(), reason="no real MNIST in data/"
)
def test_the_check_uses_the_real_test_images_when_they_are_there(checkpoints, tmp_path, capsys):
    values = {"ckpt_path": str(checkpoints["cnn_bn"]), "output": str(tmp_path / "m.onnx"), "check_images": 300}
    parity = export.export_onnx(command_config("export", **values))  # data_dir: the project's data/
    assert parity.images == 300 and parity.within_tolerance and parity.digits_agree
    assert "on 300 MNIST test images" in capsys.readouterr().out


def test_without_test_images_the_check_runs_on_seeded_noise(checkpoints, tmp_path, capsys):
    cfg = command_config("export", ckpt_path=str(checkpoints["mlp"]), output=str(tmp_path / "m.onnx"))
    cfg.data_dir, cfg.check_images = str(tmp_path / "nothing"), 64
    parity = export.export_onnx(cfg)
    assert parity.images == 64 and parity.within_tolerance and parity.onnx_correct is None
    assert "on 64 random images (no MNIST test images in" in capsys.readouterr().out


def test_an_earlier_export_is_replaced_and_a_failed_check_writes_nothing(checkpoints, synthetic, tmp_path, monkeypatch):
    output = tmp_path / "model.onnx"
    export.export_onnx(export_config(checkpoints["mlp"], output, synthetic, check_images=20))
    export.export_onnx(export_config(checkpoints["cnn"], output, synthetic, check_images=20))  # its own: replaced
    props = {p.key: p.value for p in onnx.load(output).metadata_props}
    assert props["mnist_lit.checkpoint"] == str(checkpoints["cnn"])
    before = output.read_bytes()
    monkeypatch.setattr(export, "ATOL", -1.0)  # a tolerance no model meets: the check fails
    with pytest.raises(RuntimeError, match="does not compute what the checkpoint does"):
        export.export_onnx(export_config(checkpoints["mlp"], output, synthetic, check_images=20))
    assert output.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def refusals(tmp_path, checkpoints) -> list[tuple[dict, str]]:
    foreign_ckpt = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, foreign_ckpt)
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    other = tmp_path / "other.onnx"  # a valid ONNX model, but not an export of this command
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), other)
    ckpt, out = str(checkpoints["mlp"]), str(tmp_path / "new.onnx")
    return [
        ({"output": out}, "ckpt_path is missing"),
        ({"ckpt_path": str(tmp_path / "missing.ckpt"), "output": out}, "is not allowed: no such file"),
        ({"ckpt_path": str(foreign_ckpt), "output": out}, "is not allowed: it is not a checkpoint of this project"),
        ({"ckpt_path": ckpt}, "output is missing"),
        ({"ckpt_path": ckpt, "output": str(notes)}, "that file exists and is not an ONNX export of this command"),
        ({"ckpt_path": ckpt, "output": str(other)}, "that file exists and is not an ONNX export of this command"),
        ({"ckpt_path": ckpt, "output": str(tmp_path)}, "is not allowed: it is a folder"),
        ({"ckpt_path": ckpt, "output": str(notes / "m.onnx")}, f"{notes} is a file, not a directory"),
        ({"ckpt_path": ckpt, "output": out, "check_images": 0}, "check_images=0 is not allowed"),
    ]


def test_bad_input_is_refused_and_nothing_is_written(checkpoints, tmp_path):
    cases = refusals(tmp_path, checkpoints)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for values, expected in cases:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            export.export_onnx(command_config("export", **values))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_cli_refuses_with_one_error_line(checkpoints, tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    done = run_cli("mnist_lit.export", f"ckpt_path={checkpoints['mlp']}", f"output={notes}", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: output='{notes}' is not allowed: that file exists and is not an ONNX export of this command, "
        "so it would be lost. Give a new file name"
    ]
    assert notes.read_text() == "my notes\n"
