"""Files and folders: atomic writes, atomic checkpoints, and the run directory's guard."""
