# Entry points. `make demo` and `make test` work on a fresh Debian 12 machine:
# both run `make setup` first (Debian packages, .venv, collections).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST := .venv/bin/python -m pytest

.PHONY: setup demo test test-unit test-e2e test-integration test-molecule lint sanity bench clean

setup:
	@bash scripts/setup.sh

## Compile a generated sample library into every profile and serve it on 127.0.0.1.
demo: setup
	@bash scripts/demo.sh

## Every test layer.
test: setup
	$(PYTEST) -n 2 --dist loadfile tests
	bash scripts/sanity.sh
	@if [ -x scripts/molecule.sh ]; then bash scripts/molecule.sh; fi
	$(MAKE) --no-print-directory lint

test-unit: setup
	$(PYTEST) tests/unit

test-e2e: setup
	$(PYTEST) tests/e2e

test-integration: setup
	$(PYTEST) tests/integration

test-molecule: setup
	bash scripts/molecule.sh

## yamllint, ansible-lint (profile production, settings in .ansible-lint) and the role docs.
lint: setup
	yamllint -s .
	ansible-lint --profile production
	.venv/bin/python scripts/role_docs.py --check
	.venv/bin/python -m music_devkit.profile_docs --check

## ansible-test sanity on the collection's plugins, offline (scripts/sanity.sh).
sanity: setup
	bash scripts/sanity.sh

bench: setup
	bash scripts/bench.sh

clean:
	rm -rf demo .tmp .pytest_cache
