"""Export a checkpoint to ONNX: ``python -m mnist_lit.export ckpt_path=<ckpt> output=<file.onnx>``.

The exported model holds the normalisation its checkpoint was trained with (``classifier.spec``), so it takes the
images as they come (uint8 (N, C, H, W) of the checkpoint's size and channels, e.g. (N, 1, 28, 28), white digit
on black for MNIST, any batch size) and returns the logits. Before the file is written, onnxruntime runs it on
the IDX data set's test images (random images for other data sets, or without the files) and its logits are
compared with the checkpoint's; a file that does not compute what the checkpoint computes is never written.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
import torchvision.datasets
from omegaconf import DictConfig
from torch import Tensor, nn

from mnist_lit.checkpoints import load_checkpoint, load_classifier
from mnist_lit.command import command
from mnist_lit.config.schema import fits
from mnist_lit.data.dataset import ImageDataset, ImageSpec, load_dataset
from mnist_lit.errors import ConfigError
from mnist_lit.interrupts import watch
from mnist_lit.io.owned import Owned
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.models.base import build_network

OPSET = 18  # the opset torch's dynamo exporter translates to natively; onnxruntime 1.14+ and onnxruntime-web run it
INPUT, OUTPUT = "images", "logits"
EXPORT_KEY = "mnist_lit.export"  # metadata_props key that marks a file as this command's export
FORMAT_VERSION = "1"
# The check passes when |onnx - torch| <= ATOL + RTOL * |torch| for every logit (numpy's allclose rule).
ATOL, RTOL = 1e-4, 1e-4


class ExportedClassifier(nn.Module):
    """A network with its checkpoint's normalisation in front: uint8 images (N, C, H, W) -> logits (N, classes)."""

    def __init__(self, net: nn.Module, spec: ImageSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec

    def forward(self, images: Tensor) -> Tensor:
        return self.net(self.spec.normalize(images))


def idx_dataset(classifier: DigitClassifier) -> ImageDataset | None:
    """The IDX data set the checkpoint was trained on, whose test files can check the export; None for others."""
    name = classifier.hparams.get("dataset", "mnist")  # checkpoints saved before ``data`` are of an IDX data set
    if name is None:
        return None
    dataset = load_dataset(name)
    return dataset if dataset.spec.input_shape == classifier.spec.input_shape else None


def exportable(classifier: DigitClassifier) -> ExportedClassifier:
    """The checkpoint's network rebuilt without ``torch.compile`` (same weights), in eval mode, behind normalisation."""
    spec = classifier.spec
    # compile is not a network option: the plain module
    net = build_network(dict(classifier.hparams.model), spec.input_shape, spec.num_classes)
    net.load_state_dict(classifier.net.state_dict())
    return ExportedClassifier(net.cpu(), spec).eval()


def export_program(model: ExportedClassifier) -> onnx.ModelProto:
    """``model`` as an ONNX model by torch's dynamo exporter, opset ``OPSET``, with a dynamic batch axis."""
    sample = torch.zeros(2, *model.spec.input_shape, dtype=torch.uint8)
    # The exporter's graph passes (onnxscript, onnx_ir) log every folded constant at INFO; warnings still show.
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    program = torch.onnx.export(
        model,
        (sample,),
        dynamo=True,
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=OPSET,
        dynamic_shapes={INPUT: {0: torch.export.Dim("batch", min=1)}},
        verbose=False,
    )
    return program.model_proto


def is_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX file this command wrote (it carries ``EXPORT_KEY`` in its metadata)."""
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # not ONNX at all: protobuf raises its own DecodeError, and other errors for other bytes
        return False
    return any(prop.key == EXPORT_KEY for prop in model.metadata_props)


EXPORT = Owned("an ONNX export of this command", is_export, example="model.onnx")


def check_output(output: Any) -> Path:
    """Where the ONNX file may go: a new file, or an earlier export of this command (replaced whole)."""
    if not output:
        raise ConfigError("output is missing: give output=<file.onnx>, e.g. output=model.onnx")
    return EXPORT.check(f"output={output!r}", Path(str(output)).expanduser())


def check_count(count: Any) -> int:
    """``check_images``: a number of images, at least one."""
    if not fits(count, int) or count < 1:
        raise ConfigError(f"check_images={count!r} is not allowed: it must be an integer in [1, inf)")
    return int(count)


def check_images(
    data_dir: str, count: int, spec: ImageSpec, dataset: ImageDataset | None
) -> tuple[Tensor, Tensor | None, str]:
    """``count`` images to check on (uint8 (N, C, H, W)): the IDX data set's first test images and labels, or
    noise of the spec's shape."""
    seeded = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (count, *spec.input_shape), dtype=torch.uint8, generator=seeded)
    if dataset is None:
        return noise, None, f"{count} random {spec.image_size}x{spec.image_size} images"
    root = Path(data_dir).expanduser()
    raw = dataset.raw_dir(root)
    if all((raw / name).is_file() for name in dataset.files if name.startswith("t10k")):  # the test split's files
        test = getattr(torchvision.datasets, dataset.name)(root, train=False)
        images, labels = test.data[:count, None], test.targets[:count]
        return images, labels, f"{len(images)} {dataset.name} test images"
    return noise, None, f"{count} random images (no {dataset.name} test images in {raw})"


@dataclass
class Parity:
    """How the exported model's logits compare with the checkpoint's on the same images."""

    images: int
    max_difference: float  # largest |onnx - torch| over all logits
    within_tolerance: bool
    same_digits: int  # images whose predicted digit is the same
    digits_agree: bool = True  # every digit the same, but for ties within the tolerance
    onnx_correct: int | None = None  # images the exported model reads right (when labels are known)
    torch_correct: int | None = None


def onnx_logits(path: Path, images: Tensor) -> np.ndarray:
    """onnxruntime's logits for uint8 images (N, C, H, W), run by the CPU provider from the file at ``path``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: images.numpy()})[0]


def compare(path: Path, model: ExportedClassifier, images: Tensor, labels: Tensor | None) -> Parity:
    """Run the ONNX file by onnxruntime and ``model`` by torch on the same images; the figures."""
    with torch.no_grad():
        expected = model(images).numpy()
    got = onnx_logits(path, images)
    single = onnx_logits(path, images[:1])  # the batch axis is dynamic: one image alone gives the same logits
    if got.shape != expected.shape or single.shape != expected[:1].shape:
        raise RuntimeError(f"the exported model returned logits of shape {got.shape} and {single.shape}")
    difference = float(max(np.abs(got - expected).max(), np.abs(single - expected[:1]).max()))
    close = np.allclose(got, expected, rtol=RTOL, atol=ATOL) and np.allclose(single, expected[:1], rtol=RTOL, atol=ATOL)
    digits, reference = got.argmax(axis=1), expected.argmax(axis=1)
    # A digit may differ only where the checkpoint's two best logits are closer than the tolerance (a tie).
    top2 = np.sort(expected, axis=1)[:, -2:]
    tie = top2[:, 1] - top2[:, 0] <= 2 * (ATOL + RTOL * np.abs(top2[:, 1]))
    parity = Parity(len(images), difference, bool(close), int((digits == reference).sum()))
    parity.digits_agree = bool(np.all((digits == reference) | tie))
    if labels is not None:
        parity.onnx_correct = int((digits == labels.numpy()).sum())
        parity.torch_correct = int((reference == labels.numpy()).sum())
    return parity


def input_text(spec: ImageSpec) -> str:
    """``uint8 (N, 1, 28, 28)``: the exported model's input."""
    return f"uint8 (N, {', '.join(map(str, spec.input_shape))})"


def metadata(ckpt_path: str, classifier: DigitClassifier) -> dict[str, str]:
    """What the file says about itself (``metadata_props``): its origin, its input and output."""
    spec, dataset = classifier.spec, idx_dataset(classifier)
    laid_out = f"{dataset.name}'s images" if dataset else "the training images"
    return {
        EXPORT_KEY: FORMAT_VERSION,
        "mnist_lit.checkpoint": str(Path(ckpt_path).expanduser().absolute()),
        "mnist_lit.model": json.dumps(dict(classifier.hparams.model), sort_keys=True),
        "mnist_lit.dataset": dataset.name if dataset else "",
        "mnist_lit.classes": json.dumps(list(spec.class_names)),
        "mnist_lit.input": f"{INPUT}: {input_text(spec)}, 0-255, laid out like {laid_out}",
        "mnist_lit.output": f"{OUTPUT}: float32 (N, {spec.num_classes}), softmax gives the classes' probabilities",
    }


def parity_line(parity: Parity, source: str) -> str:
    """The check's figures in one sentence."""
    verdict = "within" if parity.within_tolerance else "OUTSIDE"
    line = (
        f"Checked with onnxruntime {onnxruntime.__version__} on {source} (batches of {parity.images} and 1): "
        f"max |logit difference| {parity.max_difference:.2e}, {verdict} the tolerance {ATOL:g} + {RTOL:g} x |logit|; "
        f"the same digit for {parity.same_digits} of {parity.images}"
    )
    if parity.onnx_correct is not None:
        line += (
            f"; accuracy {parity.onnx_correct / parity.images:.2%} "
            f"(the checkpoint in torch: {parity.torch_correct / parity.images:.2%})"
        )
    return line


def export_onnx(cfg: DictConfig) -> Parity:
    """Export ``cfg.ckpt_path`` to ``cfg.output``, checked by onnxruntime before the file is written."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    output = check_output(cfg.get("output"))
    watch(output, "ONNX export")  # what an interruption's line says of it (mnist_lit.interrupts)
    count = check_count(cfg.check_images)
    classifier = load_classifier(cfg.ckpt_path, checkpoint=checkpoint)
    model = exportable(classifier)
    images, labels, source = check_images(str(cfg.data_dir), count, model.spec, idx_dataset(classifier))
    proto = export_program(model)
    onnx.helper.set_model_props(proto, metadata(cfg.ckpt_path, classifier))
    found: list[Parity] = []

    def verify(tmp: Path) -> None:
        found.append(compare(tmp, model, images, labels))
        print(parity_line(found[0], source))
        if not (found[0].within_tolerance and found[0].digits_agree):
            raise RuntimeError(f"the exported model does not compute what the checkpoint does: {output} not written")

    with EXPORT.written(output, "wb", verify=verify) as f:
        f.write(proto.SerializeToString())
    print(
        f"Wrote {output} ({output.stat().st_size / 1e6:.2f} MB): torch.onnx dynamo exporter, ONNX opset {OPSET}; "
        f"input {INPUT} {input_text(model.spec)}, output {OUTPUT} (N, {model.spec.num_classes})"
    )
    return found[0]


@command("nothing written", config="export")
def main(cfg: DictConfig) -> None:
    export_onnx(cfg)


if __name__ == "__main__":
    main()
