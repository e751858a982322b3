# make train: set up .venv (once), get MNIST, train the default CNN.  make test: the test suite, a worker
# per core (at most 4; pytest-xdist, an idle worker takes tests queued for a busy one).
# make sweep: the quick 12-job CNN grid, 2 jobs at a time (logs/sweeps/<time>/summary.md).
# make bench-serve CKPT=<ckpt>: the serving benchmark.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train sweep test lint bench bench-serve clean

install: $(STAMP)

# Reinstalls only when requirements.txt changes, so a second `make` installs nothing.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py model=cnn

sweep: $(STAMP)
	$(PY) train.py -m hparams_search=cnn_grid_quick hydra/launcher=joblib hydra.launcher.n_jobs=2

test: $(STAMP)
	$(PY) -m pytest -n auto --maxprocesses 4 --dist worksteal

bench: $(STAMP)
	$(PY) -m benchmarks.bench

# make bench-serve CKPT=<run>/checkpoints/best.ckpt: the LitServe server (torch, onnx; batching on, off) and the
# demo's server, at concurrency 1, 8 and 64, on 127.0.0.1 (benchmarks/README.md)
bench-serve: $(STAMP)
	@test -n "$(CKPT)" || { echo "Error: CKPT is missing: make bench-serve CKPT=<run>/checkpoints/best.ckpt" >&2; exit 2; }
	$(PY) -m benchmarks.serve --ckpt $(CKPT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf logs outputs multirun .pytest_cache
