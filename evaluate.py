"""Evaluate a trained run: ``python evaluate.py run_dir=<run directory>`` (see conf/eval.yaml for every option)."""

import hydra
from omegaconf import DictConfig

from mnist_lit.errors import UserError, exit_with
from mnist_lit.evaluation.evaluate import evaluate
from mnist_lit.interrupts import interruptible


@interruptible("nothing written")
@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except UserError as e:
        exit_with(e)


if __name__ == "__main__":
    main()
