# The two commands of the README are `make book` and `make test`; everything else here serves them.
# Both create .venv with the pinned requirements first (once; again when requirements change).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB     := $(VENV)/bin/jupyter-book
# What the pages load in the reader's browser (MathJax, require.js, the widget manager), from the
# npm packages pinned in package-lock.json, served by the book itself (see _config.yml).
VENDOR := book/static/vendor
ASSETS := $(VENDOR)/.installed
# Per-cell limit (seconds) for nbval; the book's own limit is in _config.yml.
CELL_TIMEOUT ?= 900

.PHONY: book test install lint unit notebooks book-quick browser run strip clean readme-figure

install: $(STAMP) $(ASSETS)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found. The book needs Python 3.11: install it, or run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: '$(PYTHON)' is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), but the pinned requirements need 3.11. Run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

$(ASSETS): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "error: 'npm' not found. The book serves MathJax and the widget manager itself, from npm packages: install Node.js 18+ with npm." >&2; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/html-manager
	cp -r node_modules/mathjax/es5 $(VENDOR)/mathjax
	cp node_modules/requirejs/require.js $(VENDOR)/require.js
	cp node_modules/@jupyter-widgets/html-manager/dist/*.js \
	   node_modules/@jupyter-widgets/html-manager/dist/*.txt \
	   node_modules/@jupyter-widgets/html-manager/dist/*.woff* \
	   node_modules/@jupyter-widgets/html-manager/dist/*.ttf \
	   node_modules/@jupyter-widgets/html-manager/dist/*.eot \
	   node_modules/@jupyter-widgets/html-manager/dist/*.svg $(VENDOR)/html-manager/
	@touch $(ASSETS)

## make book: install, then build the HTML book with the `default` profile (every chapter executed).
book: $(STAMP) $(ASSETS)
	BOOK_PROFILE=default $(JB) build . --path-output _build/default --keep-going
	@echo "The book is at $(CURDIR)/_build/default/_build/html/index.html"

## make test: install, lint, unit tests and doctests, every chapter through nbval (`quick`), a
## `quick` book build (-W), then the quick book's pages in headless Chromium with the network
## blocked, and its links.
test: $(STAMP) lint unit notebooks book-quick browser

## make lint: ruff over the package, tests, benchmarks and book scripts (rules in pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check lib tests benchmarks book

## make unit: the unit tests, then the examples in lib's docstrings as doctests.
unit: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/browser
	$(PY) -m pytest --doctest-modules lib -p no:cacheprovider

notebooks: $(STAMP)
	BOOK_PROFILE=quick $(PY) -m pytest --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider notebooks

book-quick: $(STAMP) $(ASSETS)
	BOOK_PROFILE=quick $(JB) build . --path-output _build/quick -W --keep-going
	@echo "The quick book is at $(CURDIR)/_build/quick/_build/html/index.html"

## make browser: the built quick book (run `make book-quick` first) checked offline: every internal
## link and anchor, then every page in headless Chromium (/usr/bin/chromium or $$CHROMIUM).
BOOK_HTML ?= _build/quick/_build/html
browser: $(STAMP)
	BOOK_HTML=$(BOOK_HTML) $(PY) -m pytest tests/browser -p no:cacheprovider

## make run PROFILE=paper ARGS="--only 04 -p device cuda": execute chapters with papermill.
PROFILE ?= default
run: $(STAMP)
	$(PY) -m lib.run --profile $(PROFILE) $(ARGS)

## make strip: remove stored outputs from the chapter notebooks before committing.
strip: $(STAMP)
	$(PY) -m lib.notebooks strip notebooks/*.ipynb

clean:
	rm -rf _build node_modules $(VENDOR)

## make readme-figure: redraw the README's figure from lib.
readme-figure: $(STAMP)
	$(PY) book/images/make_readme_figure.py
