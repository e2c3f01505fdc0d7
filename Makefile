# The front door: `make run` serves the app, `make test` checks it. Both set up what they need first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# ESLint for static/js, pinned in package.json / package-lock.json: `npm ci` runs again only when they change.
NPM_STAMP := node_modules/.installed-stamp

# Django 6 needs Python 3.12 or newer: take the first one found (PATH, then pyenv's versions).
PYTHON ?= $(shell for p in python3.13 python3.12 python3 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)

# llama-cpp-python (the `worker` extra: make run starts a GPU worker too) compiles llama.cpp: with CUDA where an
# NVIDIA GPU and nvcc are present, else for the CPU.
# Force one with `make run LLAMA_BUILD=cuda` or `LLAMA_BUILD=cpu`.
LLAMA_BUILD ?= $(shell command -v nvcc >/dev/null && nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
ifeq ($(LLAMA_BUILD),cuda)
LLAMA_CMAKE_ARGS := -DGGML_CUDA=on -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF $(CUDA_CMAKE_ARGS)
else
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF
# x86-64 CPU builds leave out AMX: in virtual machines (Firecracker, some KVM guests) the AMX tile state is not
# kept reliably and llama.cpp's AMX kernels die with SIGILL. On bare metal, `make LLAMA_CPU_FLAGS= ...` keeps it.
LLAMA_CPU_FLAGS ?= $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
endif
LLAMA_REQUIREMENT := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "gptoss-web needs Python 3.12 or newer (Django 6): install python3.12 and retry."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing gptoss-web (llama-cpp-python builds llama.cpp for $(LLAMA_BUILD): a few minutes the first time)"
	@# llama-cpp-python first, compiled here with these flags, never from pip's wheel cache (a cached wheel
	@# keeps the instructions of whatever build made it); installed already, it is left as it is.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CFLAGS="$(LLAMA_CPU_FLAGS)" CXXFLAGS="$(LLAMA_CPU_FLAGS)" \
		$(PY) -m pip install --quiet --no-cache-dir "$(LLAMA_REQUIREMENT)"
	$(PY) -m pip install --quiet -e ".[embedded,dev,worker]"
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m gptoss_web.run

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs Node.js and npm for ESLint: apt-get install nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NPM_STAMP)

lint: $(STAMP) $(NPM_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy gptoss_web chat inference
	$(VENV)/bin/lint-imports
	npx --no-install eslint .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Every part runs whatever the ones before it gave; the exit status is 1 when any missed a target or failed.
bench: $(STAMP)
	$(PY) -m gptoss_web.devtools.bench engine pipeline api browser routing search

clean:
	rm -rf var/static var/bench
