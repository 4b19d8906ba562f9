# Development shortcuts. `make test` is the documented way to run the suite.
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: env test test-quick demo clean distclean

env:
	bash tools/setup_env.sh

# Two workers, one core each; tests/conftest.py keeps each module (and the
# main job's tests) in one worker so shared fixtures are made once. `make test`
# ends with its 15 slowest tests, to keep the suite's time (< 15 min) in view.
XDIST := -n 2 --dist loadgroup

test: env
	$(PYTHON) -m pytest tests -q $(XDIST) --durations=15

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
	rm -rf .venv
