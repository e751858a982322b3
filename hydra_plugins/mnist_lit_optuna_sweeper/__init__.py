"""mnist-lit's Hydra sweeper on a current Optuna: persistent, resumable, shared studies with pruning.

``hydra/sweeper=optuna_study`` (registered in ``config.py``). Hydra imports every module of this
package whose name does not start with ``_`` when it scans for plugins, so only ``_sweep.py``
imports Optuna.
"""
