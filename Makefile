# Development shortcuts. `make test` is the documented way to run the suite.
SHELL := /bin/bash
PYTHON := .venv/bin/python
PYTHON_OLDEST := .venv-oldest/bin/python

.PHONY: env env-oldest test test-oldest test-quick demo clean distclean

# Today's stack (torch 2.13, numpy 2) in .venv/.
env:
	bash tools/setup_env.sh

# The users' stack (torch 2.1.0, numpy 1.26, mmcv 2.1.0 through mim) in
# .venv-oldest/, made with docs/install.md's GPU route 1 (requirements/oldest.txt).
env-oldest:
	bash tools/setup_env.sh oldest

# Two workers, one core each; tests/conftest.py keeps each module (and the
# main job's tests) in one worker so shared fixtures are made once. `make test`
# ends with its 15 slowest tests, to keep the suite's time (< 15 min) in view.
XDIST := -n 2 --dist loadgroup

test: env
	$(PYTHON) -m pytest tests -q -rs $(XDIST) --durations=15

# The suite on the users' stack.
test-oldest: env-oldest
	$(PYTHON_OLDEST) -m pytest tests -q -rs $(XDIST) --durations=15

# Unit tests only (no training, export or end-to-end tool runs), for the
# edit loop; `make test` runs everything.
test-quick: env
	$(PYTHON) -m pytest tests -q -m "not slow" $(XDIST)

# The main job: Next-ViT-S Mask R-CNN trained from scratch on generated data,
# evaluated (COCO bbox/segm AP), drawn on a held-out image and its curves
# plotted; 8-14 minutes of training on 2 CPU cores (README.md). Outputs in work_dirs/shapes_demo.
demo: env
	$(PYTHON) demo/main_job.py

# Build artefacts and caches; keeps .venv (see distclean).
clean:
	rm -rf build dist .eggs *.egg-info .pytest_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf .venv .venv-oldest
