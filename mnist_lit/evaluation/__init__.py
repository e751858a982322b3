"""Evaluation: a checkpoint's predictions on a split, their scores and the report."""
