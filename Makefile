# usps-cnn-book: every target creates the virtual environment it needs first.
#   make book   build the HTML book in _build/html
#   make test   unit tests + every chapter re-executed with nbval
#   make pdf    the whole book as one PDF (installs Debian's TeX Live when missing)
#   make check-published   book + PDF, then every page in headless Chromium and the PDF checked
#   make bench  helpers' training path against a plain model.fit (writes benchmarks/results.json)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAPTERS := $(filter-out chapters/references.md,$(wildcard chapters/*.md))
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test unit notebooks pdf check-published bench clean help print-code-hash

help:
	@sed -n '2,7p' Makefile

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Jupyter Book's execution cache re-runs a chapter only when its code cells change.
# Results also depend on helpers/ and requirements.txt, so the cache (and Sphinx's
# record of what it has read) is dropped
# whenever their hash changes: a page never shows results of older code.
CODE_HASH = $(shell cat requirements.txt helpers/*.py | sha256sum | cut -c1-16)
print-code-hash:
	@echo $(CODE_HASH)
_build/.code-hash-$(CODE_HASH):
	rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute _build/.code-hash-*
	mkdir -p _build && touch $@

book: $(STAMP) _build/.code-hash-$(CODE_HASH)
	$(BIN)/jupyter-book build . -W -n --keep-going

# Pair every chapter with its notebook (chapters/X.md <-> chapters/X.ipynb) and execute
# the notebooks so that they are committed with their outputs.
NOTEBOOKS = $(CHAPTERS:.md=.ipynb)
notebooks: $(STAMP)
	$(BIN)/jupytext --sync $(CHAPTERS)
	for nb in $(NOTEBOOKS); do \
	  (cd chapters && ../$(BIN)/jupyter execute --inplace --timeout=1800 "$$(basename $$nb)") || exit 1; done
	$(BIN)/jupytext --sync $(CHAPTERS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The chapters are re-executed by nbval in the small `ci` profile (few epochs, every
# code path); cells whose output depends on training are tagged to be run, not compared.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
test: $(STAMP)
	USPS_BOOK_PROFILE=ci $(BIN)/python -m pytest tests chapters $(NBVAL)

pdf: $(STAMP) _build/.code-hash-$(CODE_HASH)
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null && command -v xindy >/dev/null \
	  && command -v pdftotext >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  texlive-xetex texlive-latex-extra texlive-fonts-extra latexmk xindy poppler-utils)
	$(BIN)/jupyter-book build . --builder pdflatex -W -n --keep-going
	cp _build/latex/usps-cnn-book.pdf _build/html/ 2>/dev/null || true
	@ls -l _build/latex/usps-cnn-book.pdf

check-published: book pdf
	@command -v chromium >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	USPS_REQUIRE_PUBLISHED=1 $(BIN)/python -m pytest -q tests/test_published.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf _build
