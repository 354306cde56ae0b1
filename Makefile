# repodepot: the two commands a newcomer needs are `make run` and `make test`.
.DEFAULT_GOAL := help
PY := .venv/bin/python
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run:  ## Install what is needed and serve on http://127.0.0.1:8080 (SQLite in ./repodepot-data)
	scripts/bootstrap run
	.venv/bin/repodepot serve

test:  ## Install everything the tests need, then lint, type-check and run the whole suite
	scripts/bootstrap test
	$(MAKE) check

check:  ## Lint, type-check and test, without installing anything
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/pytest --cov=repodepot --cov-branch --cov-report=term:skip-covered --cov-fail-under=87

bench:  ## Run the benchmarks in bench/
	scripts/bootstrap test
	$(PY) -m bench

.PHONY: help run test check bench
