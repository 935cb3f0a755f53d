# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

JB_HOST ?= 127.0.0.1
JB_PORT ?= 8080
# Local default admin for `make run` only; set your own for anything shared.
JB_ADMIN_EMAIL    ?= admin@example.com
JB_ADMIN_PASSWORD ?= junctionbox-admin
# Local only: lets integrations reach `junctionbox receive` on this machine (README step 7).
JB_SSRF_ALLOWLIST ?= 127.0.0.1:9000
export JB_HOST JB_PORT

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@echo "junctionbox on http://$(JB_HOST):$(JB_PORT)  (embedded SQLite in ./data/)"
	@echo "  API docs : http://$(JB_HOST):$(JB_PORT)/docs"
	@echo "  console  : http://$(JB_HOST):$(JB_PORT)/console  (log in with the admin below)"
	@echo "  health   : http://$(JB_HOST):$(JB_PORT)/api/v1/health"
	@echo "  log in   : POST /api/v1/auth/login {\"email\": \"$(JB_ADMIN_EMAIL)\", \"password\": \"$(JB_ADMIN_PASSWORD)\"}"
	@echo "             (created on first start when no user exists; change it for anything shared)"
	JB_ADMIN_EMAIL=$(JB_ADMIN_EMAIL) JB_ADMIN_PASSWORD=$(JB_ADMIN_PASSWORD) \
	JB_SSRF_ALLOWLIST=$(JB_SSRF_ALLOWLIST) \
	JB_LOG_FORMAT=$${JB_LOG_FORMAT:-console} $(BIN)/junctionbox serve

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src/junctionbox

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
