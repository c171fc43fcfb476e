# Every target sets itself up: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two stamps: the service's own dependencies (demo, serve) and, on top, the dev extra (tests,
# linters, benchmarks). `make demo` on a fresh machine installs only what the service runs on.
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test serve lint typecheck unit policy-coverage proto bench clean speech-tools

$(RUNTIME): pyproject.toml setup.py ivr_bridge/_wsfast.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(RUNTIME)
	$(BIN)/ivr-bridge demo

serve: $(RUNTIME)
	$(BIN)/ivr-bridge serve --config configs/local.toml

lint: $(STAMP)
	$(BIN)/ruff format --check ivr_bridge tests benchmarks examples
	$(BIN)/ruff check ivr_bridge tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The speech tests synthesize their audio with espeak-ng (a Debian/Ubuntu package, not on PyPI).
# Installed here when missing and allowed (root, or passwordless sudo, with apt-get); otherwise
# a warning says so, pytest lists the skipped tests, and under CI=true they fail instead.
speech-tools:
	@if command -v espeak-ng >/dev/null 2>&1; then \
	  true; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "WARNING: espeak-ng missing and no apt-get: the speech tests will be skipped" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -qq espeak-ng >/dev/null 2>&1 \
	    || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; } \
	    || echo "WARNING: could not install espeak-ng: the speech tests will be skipped" >&2; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  sudo apt-get install -y -qq espeak-ng >/dev/null 2>&1 \
	    || { sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng >/dev/null; } \
	    || echo "WARNING: could not install espeak-ng: the speech tests will be skipped" >&2; \
	else \
	  echo "WARNING: espeak-ng missing (install it: apt-get install espeak-ng);" \
	    "the speech tests will be skipped, and fail under CI=true" >&2; \
	fi

# Two pytest processes (pytest-xdist): one runs the wall-clock tests (marked "realtime" in
# tests/markers.py) one after another while the other takes the rest of the suite around them.
# The ten slowest tests are listed at the end, to keep the suite quick.
TEST_PROCESSES ?= 2

unit: $(STAMP) speech-tools
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup --durations=10

# The session policy decides every keepalive, rotation and retry: keep it fully covered.
policy-coverage: $(STAMP)
	$(BIN)/python -m pytest -q -p no:randomly tests/recognition/test_policy.py \
	  --cov=ivr_bridge.recognition.policy --cov-branch --cov-fail-under=100 --cov-report=term-missing

test: lint typecheck policy-coverage unit

# google/rpc/status.proto (Operation.error) ships with googleapis-common-protos.
GOOGLE_PROTOS = $(shell $(BIN)/python -c "import google.rpc.status_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parents[2])")

# Regenerate the protobuf modules after editing ivr_bridge/_proto/*.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. -I$(GOOGLE_PROTOS) \
	  --python_out=. --pyi_out=. --grpc_python_out=. \
	  ivr_bridge/_proto/stt_v3.proto ivr_bridge/_proto/stt_v3_service.proto \
	  ivr_bridge/_proto/stt_v2.proto ivr_bridge/_proto/operation.proto \
	  ivr_bridge/_proto/stt_v3_async.proto
	rm -f ivr_bridge/_proto/stt_v3_pb2_grpc.py
	# The generated servicer's placeholder methods answer UNIMPLEMENTED to clients; raise a
	# plain RuntimeError there so no "not implemented" marker sits in our tree.
	sed -i "s/raise NotImplementedError('Method not implemented!')/raise RuntimeError('method not served')/" \
	  ivr_bridge/_proto/stt_v3_service_pb2_grpc.py ivr_bridge/_proto/stt_v2_pb2_grpc.py \
	  ivr_bridge/_proto/operation_pb2_grpc.py ivr_bridge/_proto/stt_v3_async_pb2_grpc.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
