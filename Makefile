# meshfed developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov (the Terraform scanner) in a venv of its own: it pins many packages of its own
CHECKOV := $(VENV)-checkov/bin/checkov

.PHONY: test demo trust-walkthrough system-deps image-deps image checkov unit integration docs golden proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# the demo's light install: meshfed and what it runs, no test tools, no system package
DEMO_STAMP := $(VENV)/.demo-stamp
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

## test: ruff (lint + format check), mypy --strict, import-linter contracts, pytest (all tiers,
## two workers: one module, or one group of modules, per worker at a time: tests/conftest.py)
test: $(STAMP) system-deps image $(CHECKOV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2

## demo: the main job: `meshfed up` (a whole federation on loopback; Ctrl-C stops it). Needs
## no root: meshfed and its Python dependencies only (`meshfed up --isolate` needs root,
## iproute2 and nftables: make system-deps)
demo: $(DEMO_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/meshfed up

## trust-walkthrough: the root of trust in five commands (examples/trust-walkthrough.sh)
trust-walkthrough: $(STAMP) system-deps
	PATH="$(abspath $(BIN)):$$PATH" bash examples/trust-walkthrough.sh

## system-deps: tools the tests call that pip cannot install (openssl CLI; iproute2 and
## nftables for the isolated bed of `meshfed up --isolate` and its pods' capture rules, whose
## tests run as root; curl, the unchanged client those tests run in a pod; Chromium, which
## loads the controller's dashboard headless, and certutil, which trusts the root in it;
## PostgreSQL, whose server the store tests start and stop themselves -- a cluster the
## package starts on install is stopped again)
system-deps:
	@command -v openssl >/dev/null || { \
	  echo "installing openssl (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
	@command -v ip >/dev/null || { \
	  echo "installing iproute2 (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
	@command -v nft >/dev/null || test -x /usr/sbin/nft || { \
	  echo "installing nftables (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq nftables >/dev/null; }
	@command -v curl >/dev/null || { \
	  echo "installing curl (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@command -v certutil >/dev/null || { \
	  echo "installing libnss3-tools (Debian package: certutil trusts the root in Chromium)"; \
	  apt-get update -qq && apt-get install -y -qq libnss3-tools >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (Debian package; the tests start their own server)"; \
	  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	  if command -v pg_lsclusters >/dev/null; then \
	    pg_lsclusters -h | while read -r version name _; do \
	      pg_ctlcluster "$$version" "$$name" stop 2>/dev/null || true; done; fi; }

## image: meshfed's OCI image from Debian packages and PyPI wheels, no base image pulled
## (image/build.py; docs/image.md): build/image/meshfed.oci.tar, its digest, its SBOM. As root.
image: $(STAMP) image-deps
	$(BIN)/python -m image.build --out build/image

## image-deps: the image tools (Debian packages): mmdebstrap, umoci and skopeo build it;
## podman with runc runs it in the tests (crun 1.8 refuses hybrid cgroups: docs/image.md)
image-deps:
	@for tool in mmdebstrap umoci skopeo podman runc; do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  apt-get update -qq && apt-get install -y -qq$$missing >/dev/null; fi

$(CHECKOV):
	$(PYTHON) -m venv $(VENV)-checkov
	$(VENV)-checkov/bin/python -m pip install --quiet 'checkov>=3.2'

## checkov: scan terraform/ (what tests/integration/test_terraform.py asserts: no failed check;
## each skipped one is justified by a comment in its resource)
checkov: $(CHECKOV)
	$(CHECKOV) -d terraform --framework terraform --compact --quiet

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

## docs: regenerate docs/cli.md and federation/cli/help_index.json from --help and the generated parts of docs/architecture.md
## (module index, exception tree)
docs: $(STAMP)
	$(BIN)/python -m tests.cli_reference > docs/cli.md
	$(BIN)/python -m tests.cli_reference --index > federation/cli/help_index.json
	$(BIN)/python -m tests.architecture_doc

## golden: regenerate the golden files in tests/golden (install manifests, bootstraps, xDS per
## proxy role, the CLI's answers to wrong input) after a change meant to alter them; review
## the diff before committing. cli/errors-federation.txt needs a federation: run
## MESHFED_UPDATE_GOLDEN=1 pytest tests/e2e/test_up.py -k routes_by_locality
golden: $(STAMP)
	MESHFED_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/unit/test_golden.py tests/unit/cli/test_cli_golden.py

## proto: regenerate the checked-in protocol code (federation/sync/proto, federation/ca/proto)
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I federation/sync/proto \
	  --python_out=federation/sync/proto --grpc_python_out=federation/sync/proto \
	  --pyi_out=federation/sync/proto federation/sync/proto/sync.proto
	sed -i 's/^import sync_pb2 as sync__pb2/from federation.sync.proto import sync_pb2 as sync__pb2/' \
	  federation/sync/proto/sync_pb2_grpc.py
	$(BIN)/python -m grpc_tools.protoc -I federation/sync/proto \
	  --python_out=federation/sync/proto --grpc_python_out=federation/sync/proto \
	  --pyi_out=federation/sync/proto federation/sync/proto/traffic.proto
	sed -i 's/^import traffic_pb2 as traffic__pb2/from federation.sync.proto import traffic_pb2 as traffic__pb2/' \
	  federation/sync/proto/traffic_pb2_grpc.py
	$(BIN)/python -m grpc_tools.protoc -I federation/sync/proto \
	  --python_out=federation/sync/proto --grpc_python_out=federation/sync/proto \
	  --pyi_out=federation/sync/proto federation/sync/proto/names.proto
	sed -i 's/^import names_pb2 as names__pb2/from federation.sync.proto import names_pb2 as names__pb2/' \
	  federation/sync/proto/names_pb2_grpc.py
	$(BIN)/python -m grpc_tools.protoc -I federation/ca/proto \
	  --python_out=federation/ca/proto --grpc_python_out=federation/ca/proto \
	  --pyi_out=federation/ca/proto federation/ca/proto/ca.proto
	sed -i 's/^import ca_pb2 as ca__pb2/from federation.ca.proto import ca_pb2 as ca__pb2/' \
	  federation/ca/proto/ca_pb2_grpc.py

clean:
	rm -rf build $(VENV) $(VENV)-checkov .mypy_cache .ruff_cache .pytest_cache
