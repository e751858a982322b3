"""What a redirected terminal gets: one line per epoch, no progress-bar frames, none of the libraries' notices."""

from __future__ import annotations

from tests.conftest import run_cli, synthetic_overrides

NOTICES = ("Tip:", "litlogger", "was configured so", "GPU available", "LeafSpec", "Seed set", "Restoring states",
           "FLOPs ┃", "`Trainer.fit` stopped")  # fmt: skip


def test_redirected_output_holds_epoch_lines_and_no_bar_or_notices(synthetic, tmp_path):
    done = run_cli("train.py", *synthetic_overrides(synthetic), f"hydra.run.dir={tmp_path}", "trainer.max_epochs=2")
    out = done.stdout + done.stderr
    assert "\r" not in out and "it/s" not in out, out[-2000:]
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("Epoch ")] == ["1/2", "2/2"]
    assert [n for n in NOTICES if n in out] == [], out[-3000:]
    assert out.count("MNIST: using the verified files") == 1
    assert "parameters," in done.stdout.splitlines()[0] and "MFLOPs an image" in done.stdout.splitlines()[0]
