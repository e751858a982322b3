"""``python -m mnist_lit.sweep_summary <sweep dir>``: a sweep's summary again (see mnist_lit.sweeps.summary)."""

from mnist_lit.interrupts import interruptible
from mnist_lit.sweeps import summary

main = interruptible("nothing written")(summary.main)

if __name__ == "__main__":
    raise SystemExit(main())
