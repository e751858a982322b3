"""Train a digit classifier: ``python train.py model=cnn`` (any config key can be overridden)."""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_lit.config import resolvers, store  # noqa: F401  resolvers and networks, before Hydra composes
from mnist_lit.errors import UserError, exit_with
from mnist_lit.interrupts import interruptible


@interruptible("stopped before the first epoch began: nothing to resume")
@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here: a command refused before it starts (conf/hydra's run directory guard) need not load Lightning.
    from mnist_lit.training import train

    try:
        return train(cfg)
    except UserError as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Hydra records the job as failed and the sweep goes on; SystemExit would end the sweep.
            raise
        exit_with(e)


if __name__ == "__main__":
    main()
