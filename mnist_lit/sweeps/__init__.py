"""Sweeps: the summary of a multirun's jobs and the Hydra callback that keeps it up to date."""
