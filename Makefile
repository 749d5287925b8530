# Everything goes through the virtual environment in .venv; every target is safe to run twice.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PRESET ?= classroom
SETTINGS := mnist-cifar10 cifar10-mnist
# the pair where likelihoods fail (Nalisnick et al. 2019; Ren et al. 2019), 28x28 padded to 32x32 like MNIST
FASHION_SETTINGS := fmnist-mnist mnist-fmnist
# the paper's two settings, then harder ones: near-OOD class splits, noisy in-distribution test images, Fashion-MNIST/MNIST
COMPARE_SETTINGS := $(SETTINGS) mnist-near cifar10-near mnist-cifar10+noise cifar10-mnist+noise fmnist-mnist mnist-fmnist

.PHONY: setup setup-test setup-docs site test-site repository lab test test-unit test-notebooks test-browser reproduce reproduce-ddp compare ablation ablation-fashion robustness paper-gpu gpu-session-pack notebooks clean pretrain benchmark-classroom

# Two stamps: the runtime (`make lab` and the commands that train or evaluate) and, on top of it, the
# test tools (the `test` extra: pytest, nbval, playwright, pyod) for `make test`'s targets only.
STAMP      := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check

# Laptops without an NVIDIA GPU: PyTorch's CPU-only wheels instead of about 6 GB of CUDA wheels, on a
# fresh clone: make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Unset (the default, and CI): torch comes from pip's default index like every other dependency.
TORCH_INDEX ?=
# the ranges of pyproject.toml
TORCH_REQUIREMENTS := 'torch>=2.2,<3' 'torchvision>=0.17,<1'

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PIP_INSTALL) $(TORCH_REQUIREMENTS) --index-url $(TORCH_INDEX))
	$(PIP_INSTALL) -e .
	@touch $(STAMP)

setup-test: $(TEST_STAMP)

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(PIP_INSTALL) -e '.[test]'
	@touch $(TEST_STAMP)

# the book's tools (Jupyter Book 1, sphinx-argparse, offline MathJax) for `make site` only:
# `make lab` stays light for students
DOCS_STAMP := $(VENV)/.docs-installed-stamp
setup-docs: $(DOCS_STAMP)

$(DOCS_STAMP): pyproject.toml $(TEST_STAMP)
	$(PIP_INSTALL) -e '.[test,docs]'
	@touch $(DOCS_STAMP)

# the book from the committed notebooks (not re-executed) into _build/html; warnings are errors
site: setup-docs
	$(PY) docs/build_site.py

# the repository's address, in pyproject.toml and every notebook's Colab cell: make repository URL=https://github.com/<owner>/<repo>
repository: setup
	$(PY) -m ood_helpers.colab set-repository $(URL)

# JupyterLab on the series. As root (a container) JupyterLab needs --allow-root: given only when `id -u`
# is 0. A relative OOD_PRETRAINED_DIR or OOD_DATA_DIR is taken from here, the repository root (the
# kernels run in notebooks/): OOD_PRETRAINED_DIR=runs/pretrained make lab
lab: setup
	@case "$${OOD_PRETRAINED_DIR:-/}" in /*|"~"*) ;; *) OOD_PRETRAINED_DIR="$$(pwd)/$$OOD_PRETRAINED_DIR"; export OOD_PRETRAINED_DIR;; esac; \
	case "$${OOD_DATA_DIR:-/}" in /*|"~"*) ;; *) OOD_DATA_DIR="$$(pwd)/$$OOD_DATA_DIR"; export OOD_DATA_DIR;; esac; \
	if [ "$$(id -u 2>/dev/null)" = 0 ]; then root_flag=--allow-root; else root_flag=; fi; \
	echo "$(VENV)/bin/jupyter lab $$root_flag notebooks/"; \
	exec $(VENV)/bin/jupyter lab $$root_flag notebooks/

# unit tests, then every notebook under nbval at the quick preset, then the widget in a real browser,
# then the book: built and read in a real browser
test: test-unit test-notebooks test-browser test-site

test-unit: setup-test
	$(PY) -m pytest tests --ignore=tests/browser --ignore=tests/site

# two notebooks at a time, one torch thread each (pytest-xdist, one notebook per worker): on 2 cores the
# kernels' start-up, data loading and plotting overlap the other's training
test-notebooks: setup-test
	OOD_PRESET=quick OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/ -p no:cacheprovider

test-browser: setup-test
	$(PY) -m pytest tests/browser -m browser -p no:cacheprovider

# every page of the built book in headless Chromium: console errors, images, math, links, clipping
test-site: site
	$(PY) -m pytest tests/site -m browser -p no:cacheprovider -s --confcutdir=tests/site

reproduce: setup
	for s in $(SETTINGS); do $(PY) -m ood_helpers reproduce --setting $$s --preset $(PRESET) --seed 0 --out runs/reproduce/$(PRESET)/$$s || exit 1; done

# the same runs with DistributedDataParallel over NPROC processes (one per GPU; gloo on a CPU):
# each rank trains on its slice of every global batch (the preset's batch_size), rank 0 writes.
# Several seeds on several GPUs need no DDP: one process per GPU, CUDA_VISIBLE_DEVICES=<gpu> (see ood_helpers/distributed.py)
NPROC ?= 2
reproduce-ddp: setup
	for s in $(SETTINGS); do $(VENV)/bin/torchrun --standalone --nproc-per-node=$(NPROC) -m ood_helpers reproduce --setting $$s --preset $(PRESET) --seed 0 --out runs/reproduce-ddp/$(PRESET)/$$s || exit 1; done

# the test extra brings pyod, for the PyOD rows of the committed comparisons
compare: setup-test
	for s in $(COMPARE_SETTINGS); do $(PY) -m ood_helpers compare --setting $$s --preset $(PRESET) --seeds 0 1 2 --out results/$$s || exit 1; done

# the paper's Table 3 like for like and what each of our additions adds, both paper settings, seeds 0-2
# (detectors come from OOD_PRETRAINED_DIR when set and matching, else artifacts/, trained there once)
ablation: setup
	$(PY) -m ood_helpers ablation --preset $(PRESET) --seeds 0 1 2 --out results/ablation

# the same Table 3 rows on the Fashion-MNIST / MNIST pair, where the paper's method has room below 1.0
ablation-fashion: setup
	$(PY) -m ood_helpers ablation --settings $(FASHION_SETTINGS) --preset $(PRESET) --seeds 0 1 2 --out results/ablation-fashion

robustness: setup
	for s in $(SETTINGS); do $(PY) -m ood_helpers robustness --setting $$s --preset $(PRESET) --seed 0 --out results/robustness/$$s || exit 1; done

# the paper preset on a GPU for as many epochs as BUDGET seconds allow: seconds per epoch and AUROC
BUDGET ?= 3600
paper-gpu: setup
	$(PY) benchmarks/paper_preset.py --setting mnist-cifar10 --budget-seconds $(BUDGET) --out runs/paper-preset

# pack MNIST and the CIFAR-10 test JPEGs (about 21 MB) into runs/gpu-data for a session with a borrowed GPU;
# there, benchmarks/gpu_session.sh runs the path comparison, the paper preset and full-schedule runs
gpu-session-pack:
	benchmarks/gpu_session.sh pack

# execute every notebook in place at the classroom preset, so the committed copies show real outputs
notebooks: setup
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do OOD_PRESET=$(PRESET) ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=7200 $$nb || exit 1; done

# train every detector the notebooks use, once, into PRETRAINED; a class then reads it read-only with
# OOD_PRETRAINED_DIR=$(PRETRAINED) make lab (see docs/instructors.md, "Train once, load many")
PRETRAINED ?= runs/pretrained
pretrain: setup
	$(PY) -m ood_helpers pretrain --preset $(PRESET) --out $(PRETRAINED)

# pretrain, then the series against the read-only folder in one kernel and in four at once
benchmark-classroom: setup
	$(PY) benchmarks/classroom.py --preset $(PRESET) --kernels 4 --out results/classroom

clean:
	rm -rf artifacts notebooks/artifacts runs screenshots .pytest_cache _build
