# The two commands a newcomer needs: `make run` and `make test`.
PY := .venv/bin/python
PACKAGES := specs reconciler clawkerd bpf proto cli

.PHONY: setup run test check lint typecheck layers unit integration bench clean-test-objects bpf

# The firewall's eBPF programs (bpf/*.bpf.c -> bpf/build/*.bpf.o), rebuilt when a source changes.
BPF_SRC := $(wildcard bpf/*.bpf.c)
BPF_OBJ := $(patsubst bpf/%.bpf.c,bpf/build/%.bpf.o,$(BPF_SRC))
BPF_MULTIARCH := $(shell gcc -dumpmachine 2>/dev/null || echo $$(uname -m)-linux-gnu)

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/clawker apply -f samples/agents.yaml -y

test: setup check
	$(PY) -m pytest -q -n 2 tests

check: lint typecheck layers

lint:
	.venv/bin/ruff check $(PACKAGES) tests bench scripts
	.venv/bin/ruff format --check $(PACKAGES) tests bench scripts

typecheck:
	.venv/bin/mypy

layers:
	.venv/bin/lint-imports

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

bench: setup
	$(PY) bench/run.py

bpf: $(BPF_OBJ)

bpf/build/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h)
	@mkdir -p bpf/build
	clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$(BPF_MULTIARCH) -c $< -o $@

# Removes only objects made by the test suite (they carry dev.clawker.test).
clean-test-objects:
	$(PY) -m tests.cleanup
