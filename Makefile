# Development shortcuts. `make test` is the documented way to run the suite.
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: env test demo clean distclean

env:
	bash tools/setup_env.sh

test: env
	$(PYTHON) -m pytest tests -q

demo: env
	$(PYTHON) demo/backbone_demo.py

# Build artefacts and caches; keeps .venv (see distclean).
clean:
	rm -rf build dist .eggs *.egg-info .pytest_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf .venv
