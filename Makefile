# Set-up and everyday commands; each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs docker-test flwr-run deploy-up deploy-run deploy-down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,text]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/relatlas run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint docker/*.Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml

# The documentation site (mkdocs.yml), offline; strict: a broken link or reference fails it.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

test: lint docs
	$(BIN)/python -m pytest

# The images built from a debootstrapped Debian and a federation of containers run, under a private
# dockerd (root, docker.io and debootstrap; tests/docker_daemon.py). TORCH_INDEX_URL= the CPU wheels' index, if reachable.
docker-test: $(STAMP)
	$(BIN)/python -m pytest -m docker -rs tests/test_docker_federation.py

# The default federation under Flower's own CLI; stops the local SuperLink it starts.
FLWR_ENV := FLWR_HOME=$(CURDIR)/.flwr FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 FLWR_TELEMETRY_ENABLED=0 PATH=$(CURDIR)/$(BIN):$$PATH
flwr-run: $(STAMP)
	@before=" $$(pgrep -d ' ' -f '[f]lower-superlink') "; \
	$(FLWR_ENV) $(BIN)/flwr run . local --stream --federation-config "num-supernodes=3" \
		--run-config 'out-dir="$(CURDIR)/runs/flwr" tracking-uri="sqlite:///$(CURDIR)/mlflow.db"'; status=$$?; \
	for pid in $$(pgrep -f '[f]lower-superlink'); do case "$$before" in *" $$pid "*) ;; *) kill $$pid ;; esac; done; \
	exit $$status

# A deployed federation on this machine: SuperLink + 3 SuperNodes, TLS, node authentication (docs/howto/deployment.md).
DEPLOY_DIR ?= .flwr/deployment
deploy-up: $(STAMP)
	$(BIN)/relatlas deploy up --dir $(DEPLOY_DIR)

deploy-run: $(STAMP)
	$(BIN)/relatlas deploy run --dir $(DEPLOY_DIR) --out runs/deployment $(RUN_ARGS)

deploy-down:
	$(BIN)/relatlas deploy down --dir $(DEPLOY_DIR)

clean:
	rm -rf runs mlruns mlflow.db .pytest_cache site
