# `make demo` and `make test` create .venv from the pinned files on first use.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test report clean

# MediaPipe (requirements-verify.txt, used by the tests to verify exports) needs absl-py~=2.3 while
# TF-MOT 0.8.1 declares absl-py~=1.2 (a stale pin: QAT runs with absl-py 2.5.1), so one pip
# resolution cannot hold both: it installs in a second step with --no-deps.
$(STAMP): pyproject.toml requirements.lock requirements-verify.txt
	command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Python 3.11 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e ".[test]"
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-verify.txt
	touch $@

DEMO_RUN := runs/detect/demo

# The detection demo: train on the built-in shapes, QAT, export every form, score the int8 file.
demo: $(STAMP)
	$(VENV)/bin/python -m apps.detect train --name demo --exist-ok
	$(VENV)/bin/python -m apps.detect qat --run $(DEMO_RUN)
	$(VENV)/bin/python -m apps.detect export --run $(DEMO_RUN) --format all
	$(VENV)/bin/python -m apps.detect eval --run $(DEMO_RUN) --model $(DEMO_RUN)/exports/detect_int8_qat.tflite

# Lint and format check (ruff, configured in pyproject.toml), then the suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -ra -n 2 --dist loadgroup

report: $(STAMP)
	$(VENV)/bin/python -m vision_core.backbones table --markdown

clean:
	rm -rf $(VENV)
