"""Read people's own images: ``python -m mnist_lit.predict ckpt_path=<ckpt> images=<file, folder or [list]>``.

The checkpoint says what its network takes (``classifier.spec``: image size, channels, class names). For a
model of 28x28 grayscale images, each image is prepared the way MNIST's digits were (grayscale, white digit on
black, cropped to the digit, scaled to fit 20x20, centred by its centre of mass in 28x28), so a photo or scan
of one digit on paper, of any size, looks to the model like the images it was trained on. For any other model,
each image is converted to its channels and resized to its size, as ``data=image_folder`` read the training
images.

``images=test.csv``, a table of Kaggle's Digit Recognizer (``pixel0,...,pixel783`` rows, no label), predicts every
row; ``output=submission.csv`` writes Kaggle's submission, ``ImageId,Label`` (ImageId from 1).
"""

from __future__ import annotations

import csv
import os
import typing
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from PIL import Image, ImageOps
from torch import Tensor

from mnist_lit.checkpoints import load_checkpoint, load_classifier
from mnist_lit.command import command
from mnist_lit.config.schema import typed
from mnist_lit.config.settings import Invert, PredictSettings
from mnist_lit.data.csv_table import read_pixels
from mnist_lit.data.dataset import ImageSpec
from mnist_lit.data.image_folder import fitted
from mnist_lit.errors import ConfigError, not_utf8
from mnist_lit.evaluation.inference import classify, inference_device
from mnist_lit.interrupts import watch
from mnist_lit.io.owned import Owned
from mnist_lit.io.readers import load_image, read_csv_header
from mnist_lit.lit_module import DigitClassifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
INVERT = typing.get_args(Invert)
SIZE, BOX = 28, 20  # MNIST: a 28x28 image holding the digit scaled to fit a 20x20 box
INK = 0.2  # a pixel belongs to the digit above this fraction of the darkest-to-brightest range
CSV_HEADER = "image,digit,confidence,uncertain"  # how every predictions CSV starts (top_k adds topN,pN pairs)
SUBMISSION_HEADER = "ImageId,Label"  # a Kaggle submission: a predictions CSV of a table's rows
BATCH = 1000  # the rows of a table classified at once
LINES_UP_TO = 20  # this many images or fewer get a line each below the summary; more: verbose=true


def find_images(images: str | Sequence[str]) -> list[Path]:
    """The image files that ``images`` names: a file, a folder (its image files, sorted), or a list of either."""
    entries = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    found: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"images: {str(entry)!r} is not allowed: no such file or folder")
    if not found:
        raise ConfigError(f"images={images!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    named = next((shown for shown in map(not_utf8, map(str, found)) if shown is not None), None)
    if named is not None:  # a folder's: the command line's own are refused as the command starts
        raise ConfigError(f"images: {named} is not allowed: its name is not UTF-8 text, as the predictions' must be")
    return found


def grayscale(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 gray levels in [0, 255]: transparency composited on white paper, 16-bit scaled."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "F":  # 32-bit floats, often 0..1: scaled by their own range (prepare stretches it anyway)
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = values.min(), values.max()
        return ((values - low) * (255.0 / (high - low) if high > low else 0.0)).astype(np.float32)
    if image.mode.startswith("I"):  # 16- or 32-bit integer gray levels: scale by the type's range, not clip
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else float(values.max())
        return (values * (255.0 / top)).astype(np.float32)
    if image.mode == "LAB":  # its first channel is the lightness; Pillow converts LAB to nothing else
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if image.mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    if image.mode == "HSV":  # Pillow converts HSV to RGB only
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def spec_text(spec: ImageSpec) -> str:
    """``28x28 grayscale`` or ``32x32 RGB``: the images a network takes, in words."""
    return f"{spec.image_size}x{spec.image_size} {'grayscale' if spec.channels == 1 else 'RGB'}"


def is_digit_model(spec: ImageSpec) -> bool:
    """Whether the network takes MNIST's images (28x28 grayscale), so that ``prepare`` lays images out for it."""
    return spec.input_shape == (1, SIZE, SIZE)


def prepare(image: Image.Image, invert: str = "auto") -> Tensor:
    """One digit image of any size and mode -> a uint8 (28, 28) tensor laid out like MNIST's digits."""
    gray = grayscale(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    # MNIST digits are white on black; paper is light, so a light border means "invert".
    if invert == "always" or (invert == "auto" and np.median(border) > 127):
        gray, border = 255 - gray, 255 - border
    # Lift the background to 0 and stretch the ink to 255: paper is rarely pure white, nor ink black.
    gray = np.clip(gray - np.median(border), 0, None)
    if gray.max() <= 0:
        return torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    gray *= 255.0 / gray.max()
    rows, cols = np.nonzero(gray > INK * 255)
    digit = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # LANCZOS anti-aliases like MNIST's own normalisation, which left grey levels at the edges.
    digit = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS)).clip(0, 255)

    total = digit.sum()
    ys, xs = np.indices(digit.shape)
    centre_y, centre_x = (ys * digit).sum() / total, (xs * digit).sum() / total
    top = int(round(SIZE / 2 - centre_y)) if total > 0 else (SIZE - digit.shape[0]) // 2
    left = int(round(SIZE / 2 - centre_x)) if total > 0 else (SIZE - digit.shape[1]) // 2
    # Keep the whole digit inside the canvas even when its centre of mass is far from its middle.
    top = min(max(top, 0), SIZE - digit.shape[0])
    left = min(max(left, 0), SIZE - digit.shape[1])
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return torch.from_numpy(canvas.round().astype(np.uint8))


def prepare_for(spec: ImageSpec, image: Image.Image, invert: str) -> Tensor:
    """One image -> uint8 (C, H, W) as the network of ``spec`` takes it: ``prepare``'s layout of a digit for
    28x28 grayscale models, else converted to the spec's channels and resized to its size."""
    if is_digit_model(spec):
        return prepare(image, invert)[None]
    mode = "L" if spec.channels == 1 else "RGB"
    return torch.from_numpy(fitted(ImageOps.exif_transpose(image), mode, spec.image_size)).permute(2, 0, 1)


def csv_header(top_k: int) -> str:
    """The header line of a predictions CSV with ``top_k`` classes a row."""
    return CSV_HEADER + "".join(f",top{k},p{k}" for k in range(2, top_k + 1))


def is_predictions_csv(path: Path) -> bool:
    """Whether ``path`` is a predictions CSV of this command: its header line is one this command writes, whole."""
    header = read_csv_header(path)
    return header is not None and header in (csv_header(1 + header.count(",top")), SUBMISSION_HEADER)


PREDICTIONS = Owned("a predictions CSV of this command", is_predictions_csv, example="predictions.csv")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the predictions atomically: a reader sees the old file or the new one, never half of one."""
    with PREDICTIONS.written(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def prediction_rows(
    paths: list[Path], probs: Tensor, labels: Tensor, names: tuple[str, ...], min_confidence: float
) -> list[dict[str, Any]]:
    """One CSV row per image: the class (its name), its probability, whether that is below ``min_confidence``, the
    runners-up."""
    rows = []
    for path, p, d in zip(paths, probs.tolist(), labels.tolist(), strict=True):
        row: dict[str, Any] = {"image": str(path), "digit": names[d[0]], "confidence": round(p[0], 6)}
        row["uncertain"] = p[0] < min_confidence
        for rank, (label, prob) in enumerate(zip(d[1:], p[1:], strict=True), start=2):
            row[f"top{rank}"], row[f"p{rank}"] = names[label], round(prob, 6)
        rows.append(row)
    return rows


def image_line(row: dict[str, Any], top_k: int) -> str:
    """``photo.jpg: 7   (top 3: 7 0.981, 1 0.012, 2 0.003)``, with ``uncertain`` after the digit when it is."""
    ranked = [(row["digit"], row["confidence"])] + [(row[f"top{k}"], row[f"p{k}"]) for k in range(2, top_k + 1)]
    marked = f"{row['digit']} uncertain" if row["uncertain"] else str(row["digit"])
    listed = ", ".join(f"{digit} {prob:.3f}" for digit, prob in ranked)
    return f"{row['image']}: {marked}   (top {top_k}: {listed})"


def summary_text(
    labels: list[str], uncertain: list[bool], min_confidence: float, names: tuple[str, ...], lines_follow: bool = False
) -> str:
    """Images per predicted class (``labels``: one class name an image), and how many answers are below
    ``min_confidence`` (``uncertain``)."""
    counts = Counter(labels)
    doubts = Counter(label for label, doubt in zip(labels, uncertain, strict=True) if doubt)
    width = max(5, *map(len, names))
    lines = [f"{len(labels)} images read", "", f"{'class':>{width}}{'images':>8}{'uncertain':>11}"]
    lines += [f"{name:>{width}}{counts[name]:>8}{doubts[name]:>11}" for name in names if counts[name]]
    if min_confidence > 0:
        total = sum(uncertain)
        lines += ["", f"Uncertain (probability below min_confidence={min_confidence}): {total} of {len(labels)}"]
    lines.append("" if lines_follow else f"More than {LINES_UP_TO} images: one line per image with verbose=true")
    return "\n".join(lines)


def predict_images(cfg: DictConfig) -> list[dict[str, Any]]:
    """Predict a digit for every image ``cfg.images`` names; print a summary and the lines; write ``cfg.output``."""
    typed(cfg, PredictSettings, "", open_keys=True)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    output = PREDICTIONS.check(f"output={cfg.output!r}", Path(cfg.output).expanduser()) if cfg.output else None
    if output is not None:
        watch(output, "predictions CSV")  # what an interruption's line says of it (mnist_lit.interrupts)
    images = cfg.images if not isinstance(cfg.images, ListConfig) else list(cfg.images)
    model = load_classifier(cfg.ckpt_path, inference_device(), checkpoint)
    if isinstance(images, str) and images.lower().endswith(".csv"):
        return predict_table(cfg, model, Path(images).expanduser(), output)
    paths = find_images(images)
    spec = model.spec
    prepared = []
    for path in paths:
        image = prepare_for(spec, load_image(path), cfg.invert)
        if is_digit_model(spec) and not image.any():
            raise ConfigError(
                f"images: {str(path)!r} is not allowed: it holds no digit (every pixel has the background's "
                "gray level). Give a picture of one digit, darker or lighter than its background"
            )
        prepared.append(image)
    top_k = min(cfg.top_k, spec.num_classes)  # a model of three classes has no fourth
    probs, labels = classify(model, torch.stack(prepared)).topk(top_k, dim=1)
    rows = prediction_rows(paths, probs, labels, spec.class_names, cfg.min_confidence)
    lines = cfg.verbose or len(rows) <= LINES_UP_TO
    if len(rows) > 1:
        labels, uncertain = [r["digit"] for r in rows], [r["uncertain"] for r in rows]
        print(summary_text(labels, uncertain, cfg.min_confidence, spec.class_names, lines_follow=lines))
    if lines:
        print("\n".join(image_line(row, top_k) for row in rows))
    if output is not None:
        write_csv(output, rows)
        print(f"Predictions written to {cfg.output}")
    return rows


def predict_table(cfg: DictConfig, model: DigitClassifier, path: Path, output: Path | None) -> list[dict[str, Any]]:
    """Predict every row of Kaggle's unlabelled test.csv; print the summary; write ``ImageId,Label`` to ``output``."""
    spec = model.spec
    if not is_digit_model(spec):
        raise ConfigError(
            f"images={cfg.images!r} is not allowed: its rows are 28x28 grayscale images, and the model takes "
            f"{spec_text(spec)} ones. Give the images as files, or a checkpoint of 28x28 grayscale images"
        )
    images = read_pixels(path, "images")
    probs = torch.cat([classify(model, batch) for batch in images.split(BATCH)])
    confidence, labels = probs.max(dim=1)
    names = [spec.class_names[label] for label in labels.tolist()]
    uncertain = (confidence < cfg.min_confidence).tolist()
    print(summary_text(names, uncertain, cfg.min_confidence, spec.class_names, lines_follow=True))
    rows = [{"ImageId": i, "Label": name} for i, name in enumerate(names, start=1)]
    if output is not None:
        write_csv(output, rows)
        print(f"Predictions written to {cfg.output}")
    return rows


@command("nothing written", config="predict")
def main(cfg: DictConfig) -> None:
    predict_images(cfg)


if __name__ == "__main__":
    main()
