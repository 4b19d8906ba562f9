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
# main job's tests) in one worker so shared fixtures are made once, and orders
# the modules so that neither worker waits for the other's training run
# (--no-loadscope-reorder keeps that order). `make test` ends with its 15
# slowest tests, to keep the suite's time in view (the aim: under 20 minutes
# on 2 cores; not met yet, see the 15).
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder

test: env
	$(PYTHON) -m pytest tests -q -rs $(XDIST) --durations=15

# The suite on the users' stack, less the modules below: every capability
# docs/install.md promises there is run (the backbone eager, deployed, with_cp
# and under autocast; the configs; train / test / resume, the dist and slurm
# scripts, the inferencers; safe loading; ONNX export, deploy.py to ONNX
# Runtime and OpenVINO in float and int8, the deployed application and
# mmdeploy's runtime; the main job; timm parity and the GPU benchmark's
# rehearsal with timm and torchvision, which only this stack can install).
# Left out, each run by `make test` on today's stack, because what they check
# does not depend on the torch / numpy version, only their time would be
# spent twice:
#   test_benchmark_tools, test_docs_tools: the CPU benchmark and profiling
#     tools (timing and reporting; the engines they time are run here by
#     test_deploy and test_quantize);
#   test_crash_resume, test_stability: a killed run and memory growth
#     (resume itself runs in test_tools);
#   test_mmdeploy_tools: mmdeploy's own tools on our configs (the same mmdeploy
#     calls as deploy.py, which runs here);
#   test_quickstart, test_downstream, test_curves: the docs' project-folder
#     chains and the log plotter (train / test / deploy from a project folder
#     run here through test_tools and test_deploy);
#   test_readme, test_docs_numbers: the pages' text.
OLDEST_LEFT_OUT := test_benchmark_tools.py test_docs_tools.py \
	test_crash_resume.py test_stability.py \
	test_mmdeploy_tools.py test_quickstart.py test_downstream.py \
	test_curves.py test_readme.py test_docs_numbers.py
test-oldest: env-oldest
	$(PYTHON_OLDEST) -m pytest tests -q -rs $(XDIST) --durations=15 \
		$(foreach f,$(OLDEST_LEFT_OUT),--ignore=tests/$(f))

# Unit tests only (no training, export or end-to-end tool runs), for the
# edit loop; `make test` runs everything.
test-quick: env
	$(PYTHON) -m pytest tests -q -m "not slow" $(XDIST)

# The main job: Next-ViT-S Mask R-CNN trained from scratch on generated data,
# evaluated (COCO bbox/segm AP), drawn on a held-out image and its curves
# plotted; about 13 minutes on 2 CPU cores (docs/benchmarks/bundled_runs.json).
# Outputs in work_dirs/shapes_demo.
demo: env
	$(PYTHON) demo/main_job.py

# Build artefacts and caches; keeps .venv (see distclean).
clean:
	rm -rf build dist .eggs *.egg-info .pytest_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf .venv .venv-oldest
