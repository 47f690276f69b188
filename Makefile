# The two commands a user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision pinned for this project's machines (served from local disk there);
# pyproject keeps loose ranges for real users.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# s3fs's aiobotocore pins botocore to a few releases while moto takes the newest boto3:
# unpinned, pip backtracks for tens of minutes (through every lightning release). With
# these, the dev install resolves in ~15 s.
S3_PINS := s3fs==2026.9.0 aiobotocore==3.10.0 botocore==1.43.117 boto3==1.43.117 moto==5.2.5

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev,export]' $(TORCH_PINS) $(S3_PINS)
	@# The browser test opens the report in Debian's chromium (Playwright never downloads one);
	@# sudo -n only when not root, so a root CI container without sudo installs it too.
	command -v chromium >/dev/null || test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	} || echo "warning: chromium not installed: tests/reports/test_browser.py will fail until it is"
	@# --engine spark runs pyspark, which needs a Java 17 runtime (Debian's, headless).
	command -v java >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	} || echo "warning: no Java runtime: the Spark tests (tests/analysis/test_spark.py) will fail until one is installed"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/telemetry demo --out demo-runs --report report.html

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check store collector integrations exports analysis reports telemetry tests benchmarks
	$(VENV)/bin/ruff format --check store collector integrations exports analysis reports telemetry tests benchmarks
	$(VENV)/bin/mypy

# Every benchmark, each writing benchmarks/results/<name>.json, then SUMMARY.md (~40 min
# on a 2-core CPU; not part of `make test`: benchmarks measure, tests assert behaviour).
bench: $(STAMP)
	$(PY) benchmarks/overhead.py --rounds 2 --out benchmarks/results/overhead.json
	$(PY) benchmarks/interleaved.py --out benchmarks/results/interleaved.json
	$(PY) benchmarks/hot_path.py --out benchmarks/results/hot_path.json
	$(PY) benchmarks/demo_overhead.py --rounds 3 --out benchmarks/results/demo_overhead.json
	$(PY) benchmarks/writer.py --out benchmarks/results/writer.json
	$(PY) benchmarks/store_scale.py --rows 1e6 1e7 --sweep 10 100 --out benchmarks/results/store_scale.json
	$(PY) benchmarks/incremental.py --runs 1000 --out benchmarks/results/incremental.json
	$(PY) benchmarks/spark_engine.py --runs 1000 --sweep 4 --out benchmarks/results/spark_engine.json
	$(PY) benchmarks/object_storage.py --runs 10 --steps 200 --out benchmarks/results/object_storage.json
	test ! -f benchmarks/report_size.py || $(PY) benchmarks/report_size.py
	$(PY) benchmarks/summary.py

clean:
	rm -rf $(VENV) demo-runs report.html .pytest_cache .mypy_cache .ruff_cache
