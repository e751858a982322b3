"""Train a digit classifier: ``python train.py model=cnn`` (any config key can be overridden)."""

import hydra
from omegaconf import DictConfig

from mnist_lit.config import resolvers, store  # noqa: F401  resolvers and networks, before Hydra composes
from mnist_lit.interrupts import interruptible


@interruptible("stopped before the first epoch began: nothing to resume")
@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here: a command refused before it starts (conf/hydra's run directory guard) need not load Lightning.
    from mnist_lit.training import train

    # A UserError is left to Hydra, which records the job as failed: a sweep goes on, and a single run's guard
    # (mnist_lit.io.run_dir) removes the folders it made and ends the command with the one Error: line.
    return train(cfg)


if __name__ == "__main__":
    main()
