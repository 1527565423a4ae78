# make demo: set everything up on a fresh clone and run the demo.
# make test: set everything up and run the whole test suite (lint, types, import contract, pytest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check venv clean bench constraints

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch alone first: this machine has its CPU wheel on disk; a combined resolve
	# could start downloading a multi-GB CUDA build instead.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# Everything else at the versions constraints.txt pins (pyproject.toml has ranges).
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lsdctl demo

lint: $(STAMP)
	$(BIN)/ruff check lsdctl daemon engine tests bench scripts
	$(BIN)/mypy lsdctl daemon engine/project/config.py engine/geometry.py engine/project/lineage.py engine/runs/resolve.py \
		engine/evaluate/evaluation.py engine/segment/fragments.py engine/segment/rag.py engine/segment/agglomerate.py engine/blockwise \
		engine/entry.py engine/segment/segmentation.py engine/contract engine/segment/union_find.py \
		engine/segment/threshold_sweep.py engine/evaluate/partitioned_scores.py engine/predict
	$(BIN)/lint-imports

# Two test processes, one test file each at a time: most tests wait on subprocesses,
# daemons and daisy workers, so two overlap well on 2 cores. OMP_WAIT_POLICY=PASSIVE:
# two trainings at once (one per test process) otherwise spin-wait on each other's cores;
# two gala learning tests side by side took 168 s with spinning, 83 s without.
test: lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# After a change of dependencies in pyproject.toml: install, then pin what got installed.
constraints:
	$(BIN)/python -m pip install --quiet -e '.[test]'
	{ grep '^#' constraints.txt; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
