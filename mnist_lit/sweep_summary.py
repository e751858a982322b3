"""``python -m mnist_lit.sweep_summary <sweep dir>``: a sweep's summary again (see mnist_lit.sweeps.summary)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_lit.command import command
from mnist_lit.errors import ConfigError
from mnist_lit.interrupts import explained
from mnist_lit.io.atomic import unwritable_reason
from mnist_lit.sweeps import summary


@command("nothing written")
def main(argv: list[str] | None = None) -> int:
    """Command line: summarise a sweep directory and print the Markdown table."""
    parser = argparse.ArgumentParser(
        prog="python -m mnist_lit.sweep_summary", description=summary.__doc__.splitlines()[0]
    )
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory, e.g. logs/sweeps/<time>")
    sweep_dir: Path = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir():
        raise ConfigError(
            f"sweep_dir={str(sweep_dir)!r} is not a directory: give a sweep's directory, e.g. logs/sweeps/<time>"
        )
    if (sweep_dir / ".hydra").is_dir():
        raise ConfigError(
            f"sweep_dir={str(sweep_dir)!r} is not allowed: it is one run's folder (it has .hydra/), not a sweep's: "
            "give the folder of a multirun (python train.py -m ...), e.g. logs/sweeps/<time>"
        )
    if not any(sweep_dir.glob("**/.hydra/overrides.yaml")):
        raise ConfigError(
            f"sweep_dir={str(sweep_dir)!r} holds no job directory (none has .hydra/overrides.yaml): "
            "give one a multirun wrote"
        )
    reason = unwritable_reason(sweep_dir)
    if reason:
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} cannot take the summary: {reason}")
    kept = f"each of {', '.join(summary.SUMMARY_FILES)} in {sweep_dir} is whole, the previous one or the new one"
    with explained(f"{kept}: run the command again to bring them all up to date"):
        summary.write_summary(sweep_dir)
    print((sweep_dir / "summary.md").read_text(), end="")
    written = [*summary.SUMMARY_FILES, *([summary.FOLDS_FILE] if (sweep_dir / summary.FOLDS_FILE).exists() else [])]
    print(f"\nWritten: {', '.join(str(sweep_dir / name) for name in written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
