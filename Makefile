# usps-cnn-book: every target creates the virtual environment it needs first.
#   make book      build the HTML book in _build/html from the results ledger (trains nothing)
#   make test      unit tests, the ledger's checks and one retrain, every chapter re-executed with nbval
#   make pdf       the whole book as one PDF (installs Debian's TeX Live when missing and root)
#   make check-published   book + PDF, then every page in headless Chromium and the PDF checked
#   make results   train what the results ledger lacks or has stale (resumable; CLUSTER=tcp://host:8786: on Dask)
#   make retrain   retrain every run (RUNS="--unverified", keys, groups: a subset) and compare: results/VERIFY.md
#   make bench     helpers' training path against a plain model.fit (writes benchmarks/results.json)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAPTERS := $(filter-out chapters/references.md,$(wildcard chapters/*.md))
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test unit notebooks pdf check-published bench clean help print-code-hash results retrain check

help:
	@sed -n '2,9p' Makefile

# pip -qq prints errors only: with one -q, the editable install of helpers (requirements.txt's
# `-e .`) still prints setuptools' "Editable installation" notice in a box of !!, which is
# information, not a problem, and reads like one in the build log.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -r requirements.txt
	touch $@

# Sphinx re-reads (and so re-runs, inline) only the chapters whose text changed. Results also
# depend on helpers/, requirements.txt and the results ledger, so Sphinx's record of what it
# has read is dropped whenever their hash changes: a page never shows results of older code. The hash is computed with Python (everywhere).
CODE_HASH := $(shell $(PYTHON) helpers/stamp.py)
ifeq ($(CODE_HASH),)
$(error could not hash helpers/ with $(PYTHON): is Python 3 installed?)
endif
print-code-hash:
	@echo $(CODE_HASH)
_build/.code-hash-$(CODE_HASH):
	rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute _build/.code-hash-*
	mkdir -p _build && touch $@

# The book never trains: every chapter reads the committed results ledger, and a stale
# or altered ledger stops the build here, before any page is executed.
export USPS_TRAINING ?= forbid
check: $(STAMP)
	$(BIN)/python -m helpers check

book: $(STAMP) check _build/.code-hash-$(CODE_HASH)
	$(BIN)/jupyter-book build . -W -n --keep-going

# Pair every chapter with its notebook (chapters/X.md <-> chapters/X.ipynb) and execute
# the notebooks as JupyterLab's "Run all" does, so that they are committed with their outputs
# and with the values of the prose's {eval} expressions (which JupyterLab shows on opening).
# Each notebook records the code stamp and profile it was executed with (tests compare).
NOTEBOOKS = $(CHAPTERS:.md=.ipynb)
notebooks: $(STAMP) check
	$(BIN)/jupytext --sync $(CHAPTERS)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/python -m helpers.notebooks execute "$$nb" || exit 1; done
	$(BIN)/jupytext --sync $(CHAPTERS)
	$(BIN)/python -m helpers.notebooks stamp $(NOTEBOOKS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The chapters are re-executed by nbval from the results ledger and every table and glued
# number is compared with the committed notebooks (the few cells that describe the
# machine or time it carry nbval-ignore-output, each with a comment saying why).
# Two worker processes (TEST_WORKERS): the paper model's retrain keeps one core busy for about
# two minutes while the other runs the rest; --dist loadscope keeps each notebook's cells (and
# each test module) together on one worker, in order, as nbval needs. --no-loadscope-reorder
# hands the modules out in collection order (tests/conftest.py puts the two slowest first, one per
# worker): pytest-xdist otherwise hands out the modules with the most tests first, which left the
# retrain for last (benchmarks/TIMINGS.md, 2026-12-04).
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest tests chapters $(NBVAL) -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

TEX_PACKAGES := texlive-xetex texlive-latex-extra texlive-fonts-extra latexmk xindy poppler-utils
define NEED_TEX
The PDF needs XeLaTeX, latexmk, xindy and pdftotext, and they cannot be installed here.
  Debian/Ubuntu:  sudo apt-get install $(TEX_PACKAGES)
  macOS:          brew install --cask mactex  (then: brew install poppler)
Then run `make pdf` again.
endef
export NEED_TEX
define apt_install
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else echo "$$$(2)" >&2; exit 1; fi
endef

# latexmk -silent: XeLaTeX's page-by-page output (about 4000 lines, with the first pass's
# "undefined reference" warnings that the next passes resolve, and overfull boxes) stays in
# _build/latex/usps-cnn-book.log; when the PDF fails, the errors are printed from that log.
pdf: $(STAMP) check _build/.code-hash-$(CODE_HASH)
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null && command -v xindy >/dev/null \
	  && command -v pdftotext >/dev/null || { $(call apt_install,$(TEX_PACKAGES),NEED_TEX); }
	LATEXMKOPTS=-silent $(BIN)/jupyter-book build . --builder pdflatex -W -n --keep-going \
	  || { grep -A4 '^!' _build/latex/usps-cnn-book.log 2>/dev/null | head -40 >&2; exit 1; }
	cp _build/latex/usps-cnn-book.pdf _build/html/ 2>/dev/null || true
	@ls -l _build/latex/usps-cnn-book.pdf

define NEED_CHROMIUM
The published-book checks need Chromium, and it cannot be installed here.
  Debian/Ubuntu:  sudo apt-get install chromium   (Ubuntu: the chromium snap, or Google Chrome)
  macOS:          brew install --cask chromium
Then run `make check-published` again.
endef
export NEED_CHROMIUM

CHROMIUM ?= $(shell command -v chromium || command -v google-chrome || echo /usr/bin/chromium)
export CHROMIUM
check-published: book pdf
	@test -x "$(CHROMIUM)" || { $(call apt_install,chromium,NEED_CHROMIUM); }
	USPS_REQUIRE_PUBLISHED=1 $(BIN)/python -m pytest -q -s tests/test_published.py tests/test_demo.py tests/test_reader.py tests/test_jupyterlab.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# Training is a separate step that writes the committed results ledger (results/).
# Both targets resume where an interrupted call stopped; neither is needed to build the book.
# The runs are trained on Dask distributed (helpers/cluster.py): by default an embedded cluster of
# one-thread worker processes on this machine; CLUSTER=tcp://host:8786 (or USPS_CLUSTER) sends them
# to that scheduler's workers instead (README, "On a cluster").
CLUSTER ?= $(USPS_CLUSTER)
results: $(STAMP)
	USPS_BOOK_PROFILE=full USPS_CLUSTER=$(CLUSTER) $(BIN)/python -m helpers results

# RUNS selects a subset: --unverified, entry keys (8+ characters), or words of a registry group's name,
# alternatives separated by commas (RUNS="third round, fourth round").
RUNS ?=
retrain: $(STAMP)
	USPS_BOOK_PROFILE=full USPS_CLUSTER=$(CLUSTER) $(BIN)/python -m helpers retrain $(RUNS)

clean:
	rm -rf _build
