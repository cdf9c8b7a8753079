# `make demo` and `make test` create .venv from the pinned files on first use.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test report clean

$(STAMP): pyproject.toml requirements.lock requirements-verify.txt
	command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Python 3.11 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e ".[test]"
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-verify.txt
	touch $@

demo: $(STAMP)
	$(VENV)/bin/python -m vision_core.backbones demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -ra -n 2 --dist loadgroup

report: $(STAMP)
	$(VENV)/bin/python -m vision_core.backbones table --markdown

clean:
	rm -rf $(VENV)
