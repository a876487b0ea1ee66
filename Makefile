# rapport's command surface. `make demo` and `make test` work on a fresh machine: they set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
# sam build for python3.13 needs a python3.13 on PATH; these machines keep it under pyenv.
PY313_BIN := $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin
SAM_PATH := $(PY313_BIN):$(PATH)
export AWS_EC2_METADATA_DISABLED := true

.PHONY: setup demo test test-fast lint format build validate bench clean java chromium firefox agent-page

setup: $(VENV)/.installed node_modules/.installed $(SAM_VENV)/.installed java chromium firefox agent-page

$(VENV)/.installed: pyproject.toml layers/rapport/requirements.txt functions/sip_rule/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# aws-sam-cli pins its own pydantic, so it lives in a venv of its own.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0
	touch $@

# DynamoDB Local runs on Java 17.
java:
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }

# The agent page's tests drive Debian's Chromium headless (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# ... and Debian's Firefox ESR, driven over WebDriver BiDi by puppeteer-core (no browser download either).
firefox:
	@command -v firefox-esr >/dev/null || { apt-get update -qq && apt-get install -y -qq firefox-esr; }

# The agent page's script: src/app.js with amazon-chime-sdk-js, bundled by esbuild (npm run build:agent-page).
agent-page: agent-page/dist/agent-page.js

agent-page/dist/agent-page.js: node_modules/.installed agent-page/src/app.js package.json
	npm run -s build:agent-page

demo: setup
	$(BIN)/rapport demo

test: setup lint
	RAPPORT_SAM=$(SAM) $(BIN)/pytest

# Unit tests only: no DynamoDB, no sam.
test-fast: $(VENV)/.installed
	$(BIN)/pytest tests/unit

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/rapport local/rapport_local tests bench
	$(BIN)/mypy functions/sma_router
	$(BIN)/mypy functions/sip_rule
	$(BIN)/mypy functions/signals
	$(BIN)/mypy functions/privacy
	$(BIN)/mypy functions/agents
	$(BIN)/mypy functions/connect_router
	$(BIN)/mypy functions/connect_agent_events
	$(BIN)/mypy functions/agent_page
	$(BIN)/mypy functions/hold_audio

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

validate: $(VENV)/.installed $(SAM_VENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1

build: $(SAM_VENV)/.installed
	PATH="$(SAM_PATH)" $(SAM) build --parallel

# rapport beside a minimal baseline: latency, requests and capacity, cold start, package sizes, load.
# The report lands in bench/out/results.md (with bench/out/latency.png).
bench: setup
	PATH="$(SAM_PATH)" $(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) $(SAM_VENV) node_modules .aws-sam .mypy_cache .ruff_cache .pytest_cache
