# pushbridge — the commands README promises. Each target sets up what it needs first.
SWIFT       ?= swift
BUILD_FLAGS ?=
PG_ENV      := .build/postgres.env

.PHONY: setup build demo test bench clean-postgres

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build $(BUILD_FLAGS) --product pushbridge

## One command: build, start the Bitbucket emulator and the daemon, push a sample app, print the PR.
demo: build
	$(SWIFT) run $(BUILD_FLAGS) --skip-build pushbridge demo

## One command: install test tools, start PostgreSQL, run every test.
test:
	@scripts/setup.sh --test
	@mkdir -p .build
	@scripts/postgres-setup.sh > $(PG_ENV)
	@set -a; . ./$(PG_ENV); set +a; \
	  status=0; $(SWIFT) test $(BUILD_FLAGS) || status=$$?; \
	  scripts/postgres-stop.sh >/dev/null 2>&1 || true; \
	  exit $$status

## Side-by-side benchmark: GitKit vs the plain git CLI, one run, ratios.
bench: setup
	$(SWIFT) build -c release --product pushbridge-bench
	.build/release/pushbridge-bench --out Benchmarks/results/latest.json

clean-postgres:
	@scripts/postgres-stop.sh || true
