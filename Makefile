# Two commands on a fresh machine: `make demo` and `make test`.
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup_env.sh

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks

bench: setup
	xvfb-run -a .venv/bin/python benchmarks/bench_reader.py
