# Two commands do all the set-up on a fresh machine:
#   make test   create .venv/ if missing, install cgd_video into it, run the tests
#   make demo   create .venv/ if missing, then synthetic data -> lists -> train -> 10x3 test -> infer
#   make bench  quick model, data and temporal-order benchmarks -> outputs/bench/*.json
#   make gpu-wheels  wheels the GPU machine lacks (Python 3.12, manylinux x86_64) -> .whl/ for benchmarks/gpu_check.sh
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := outputs/demo

.PHONY: test demo venv bench gpu-wheels

venv: $(STAMP)

# The registry's torch + torchvision pair (CUDA build, runs on CPU too). The preinstalled CPU torch
# cannot import torchvision (see README, "Install").
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,export]'
	$(PY) -c 'from cgd_video.models.cgd_native import main; main()'  # CGD's C++ CPU op: built once per machine kind, cached
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

demo: $(STAMP)
	$(PY) tools/demo.py --out $(DEMO)

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py --quick --json outputs/bench/model_quick.json
	$(PY) benchmarks/bench_data.py --quick --json outputs/bench/data_quick.json
	$(PY) benchmarks/bench_timeline.py --quick --json outputs/bench/timeline_quick.json
	$(PY) benchmarks/bench_temporal.py --quick --json outputs/bench/temporal_quick.json

# The GPU machine's python3 (3.12) has torch, torchvision, triton, pytest, pyyaml, tqdm, matplotlib but not
# these; benchmarks/gpu_check.sh installs .whl/*.whl into a temporary --target folder before it runs.
# Binary wheels for the GPU machine's platform; the pure-Python packages published only as sdists
# (fvcore, iopath, pytorchvideo) are built into py3-none-any wheels here. Pins from constraints.txt.
WHL := .whl
GPU_BINARY_WHEELS := av decord yacs termcolor==3.3.0
GPU_SDIST_WHEELS  := fvcore iopath pytorchvideo
pin = $(if $(findstring ==,$(1)),$(1),$(shell grep -i '^$(1)==' constraints.txt || echo $(1)))
gpu-wheels:
	rm -rf $(WHL) && mkdir -p $(WHL)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d $(WHL) \
	    $(foreach p,$(GPU_BINARY_WHEELS),$(call pin,$(p)))
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(WHL) $(foreach p,$(GPU_SDIST_WHEELS),$(call pin,$(p)))
	@total=$$(du -cb $(WHL)/*.whl | tail -1 | cut -f1); ls -l $(WHL); echo "$(WHL)/: $$total bytes"; \
	    test $$total -lt 60000000 || { echo "$(WHL)/ is over 60 MB: the device tool carries 64 MiB in all"; exit 1; }
