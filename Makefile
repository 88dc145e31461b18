# Two commands do all the set-up on a fresh machine:
#   make test   create .venv/ if missing, install cgd_video into it, run the tests
#   make demo   create .venv/ if missing, then synthetic data -> lists -> train -> 10x3 test -> infer
#   make bench  quick model and data benchmarks -> outputs/bench/*.json
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := outputs/demo

.PHONY: test demo venv bench

venv: $(STAMP)

# The registry's torch + torchvision pair (CUDA build, runs on CPU too). The preinstalled CPU torch
# cannot import torchvision (see README, "Install").
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,export]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

demo: $(STAMP)
	$(PY) tools/demo.py --out $(DEMO)

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py --quick --json outputs/bench/model_quick.json
	$(PY) benchmarks/bench_data.py --quick --json outputs/bench/data_quick.json
