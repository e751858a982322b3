"""``mnist_lit.evaluation.figures``: the confusion figure shows the matrix's counts and the class names, the image grid
its images and captions, ``save_figure`` writes a readable PNG, and the augmented samples are one seeded draw that
leaves the global random state alone.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgba
from PIL import Image

from mnist_lit.data.fashion_mnist import DATASET as FASHION
from mnist_lit.evaluation.figures import augmented_samples, confusion_figure, image_grid, save_figure
from tests.conftest import synthetic_digits


def digits(n: int, seed: int = 5) -> torch.Tensor:
    return torch.from_numpy(synthetic_digits(n, seed)[0])


def test_the_confusion_figure_shows_each_nonzero_count_in_its_cell_and_the_class_names():
    classes = FASHION.classes[:3]  # long names: the column labels are turned
    confusion = torch.tensor([[50, 0, 3], [2, 41, 0], [0, 0, 47]])
    fig = confusion_figure(confusion, "Confusion matrix, test split", classes)
    ax = fig.axes[0]  # the heatmap; the colour bar is the other
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert {cell: int(t.get_text()) for cell, t in cells.items()} == {
        (r, c): int(confusion[r, c]) for r in range(3) for c in range(3) if confusion[r, c]
    }
    assert to_rgba(cells[0, 2].get_color()) == to_rgba("firebrick")  # a small mistake stands out
    assert to_rgba(cells[0, 0].get_color()) == to_rgba("white")  # on the dark diagonal
    assert [t.get_text() for t in ax.get_xticklabels()] == list(classes)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(classes)
    assert ax.get_xticklabels()[0].get_rotation() == 45
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted", "true", "Confusion matrix, test split")
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), confusion.numpy() + 1)


def test_the_image_grid_holds_each_image_with_its_caption_and_leaves_the_rest_blank():
    images = digits(7)
    captions = [f"true {i} / predicted {9 - i}" for i in range(7)]
    fig = image_grid(images, captions, columns=3, title="Misclassified")
    assert fig.get_suptitle() == "Misclassified"
    assert len(fig.axes) == 9  # 3 rows of 3
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 7 and all(not ax.images and not ax.get_title() for ax in fig.axes[7:])
    for ax, image, caption in zip(shown, images, captions, strict=True):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), image.numpy())
        assert ax.get_title() == caption


def test_save_figure_writes_a_png_that_reads_back_at_100_dpi(tmp_path):
    fig = confusion_figure(torch.eye(10, dtype=torch.int64) * 20, "Confusion", [str(d) for d in range(10)])
    path = tmp_path / "confusion_matrix.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (750, 650)  # figsize 7.5 x 6.5 inches at 100 dpi
        pixels = np.asarray(image.convert("L"))
    assert pixels.max() == 255 and pixels.min() < 100  # drawn on: dark cells and text on a white background


def test_augmented_samples_are_a_seeded_draw_that_leaves_the_global_generator_alone():
    images = digits(6)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = augmented_samples(images, "affine", seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(augmented_samples(images, "affine", seed=0), first)
    assert not torch.equal(augmented_samples(images, "affine", seed=1), first)
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert not torch.equal(first, images)  # moved: the images are not returned as they were
    assert (first.float().mean() - images.float().mean()).abs() < 0.25 * images.float().mean()  # digits, not blanks
