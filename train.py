"""Train a digit classifier: ``python train.py model=cnn`` (any config key can be overridden)."""

from omegaconf import DictConfig

from mnist_lit.command import command
from mnist_lit.config import store  # noqa: F401  the networks in Hydra's ConfigStore, before Hydra composes


@command("stopped before the first epoch began: nothing to resume", config="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here: a command refused before it starts (conf/hydra's run directory guard) need not load Lightning.
    from mnist_lit.training import train

    return train(cfg)


if __name__ == "__main__":
    main()
