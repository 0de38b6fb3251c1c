# The two commands of the README are `make book` and `make test`; everything else here serves them.
# Both create .venv with the pinned requirements first (once; again when requirements change).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB     := $(VENV)/bin/jupyter-book
# Per-cell limit (seconds) for nbval; the book's own limit is in _config.yml.
CELL_TIMEOUT ?= 900

.PHONY: book test install unit notebooks book-quick run strip clean readme-figure

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found. The book needs Python 3.11: install it, or run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: '$(PYTHON)' is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), but the pinned requirements need 3.11. Run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

## make book: install, then build the HTML book with the `default` profile (every chapter executed).
book: $(STAMP)
	BOOK_PROFILE=default $(JB) build . --path-output _build/default --keep-going
	@echo "The book is at $(CURDIR)/_build/default/_build/html/index.html"

## make test: install, unit tests, every chapter through nbval (`quick`), a `quick` book build (-W).
test: $(STAMP) unit notebooks book-quick

unit: $(STAMP)
	$(PY) -m pytest tests

notebooks: $(STAMP)
	BOOK_PROFILE=quick $(PY) -m pytest --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider notebooks

book-quick: $(STAMP)
	BOOK_PROFILE=quick $(JB) build . --path-output _build/quick -W --keep-going
	@echo "The quick book is at $(CURDIR)/_build/quick/_build/html/index.html"

## make run PROFILE=paper ARGS="--only 04 -p device cuda": execute chapters with papermill.
PROFILE ?= default
run: $(STAMP)
	$(PY) -m lib.run --profile $(PROFILE) $(ARGS)

## make strip: remove stored outputs from the chapter notebooks before committing.
strip: $(STAMP)
	$(PY) -m lib.notebooks strip notebooks/*.ipynb

clean:
	rm -rf _build

## make readme-figure: redraw the README's figure from lib.
readme-figure: $(STAMP)
	$(PY) book/images/make_readme_figure.py
