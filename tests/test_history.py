"""The epoch history: each epoch's logged metrics, validation figures only in the epochs that validated."""

from __future__ import annotations

from mnist_lit.history import EpochHistory
from tests.conftest import synthetic_overrides, train_in_process

TRAINED = {"epoch", "seconds", "train/loss", "train/acc"}


def test_each_epoch_holds_its_training_metrics_and_its_validation_only_where_it_ran(synthetic, tmp_path):
    metrics = train_in_process(
        tmp_path, *synthetic_overrides(synthetic), "model.hidden=16", "trainer.max_epochs=3",
        "+trainer.check_val_every_n_epoch=2",
    )  # fmt: skip
    validated = TRAINED | {"step", "val/loss", "val/acc"}
    assert [set(record) for record in metrics["history"]] == [TRAINED, validated, TRAINED]
    assert metrics["best_epoch"] == 2 and metrics["val/loss"] == metrics["history"][1]["val/loss"]


def test_a_checkpoint_saved_before_the_history_had_its_own_callback_resumes_its_history():
    history = [{"epoch": 1, "val/loss": 0.5}]
    older = EpochHistory()
    older.on_load_checkpoint(None, None, {"callbacks": {"EpochSummary": {"history": history}}})
    assert older.history == history
    newer = EpochHistory()
    newer.on_load_checkpoint(None, None, {"callbacks": {"EpochHistory": {"history": history}}})
    assert newer.history == []  # Lightning hands it to load_state_dict
