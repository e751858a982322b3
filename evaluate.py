"""Evaluate a trained run: ``python evaluate.py run_dir=<run directory>`` (see conf/eval.yaml for every option)."""

from omegaconf import DictConfig

from mnist_lit.command import command
from mnist_lit.evaluation.evaluate import evaluate


@command("nothing written", config="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
