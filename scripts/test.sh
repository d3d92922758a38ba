#!/usr/bin/env bash
# The test suite: unit tests, and end-to-end tests that drive the real binary against
# real git repositories and a real Docker engine (the local test image is built first;
# nothing is pulled). Lanes:
#
#   v1  every test with Compose v1 (`KINFRA_COMPOSE=v1`, `docker-compose`), but
#       `hosts::`;
#   hosts  `hosts::` against the test hosts of scripts/hosts.sh (`scripts/hosts.sh up`
#       first; .ci/run does);
#   v2  the Docker end-to-end modules (`stack::`, `compose_stack::`, `snapshot::`, and the MCP
#       session on a running stack) again with Compose v2 (`KINFRA_COMPOSE=v2`, the
#       `docker compose` plugin installed under target/docker-config by
#       scripts/install-compose-v2.sh).
#
# `compose_stack::` runs on its own in each lane: it holds slots 9 and 10 of the
# built-in ktrdr layout (host ports 8009, 8010, ...), which other modules' tests expect
# to find free when they create ktrdr sandboxes. `density::` (forty stacks at once,
# memory budgets) runs on its own, once, in lane v1. `hosts::` (sandboxes on other
# machines over ssh: the test hosts of scripts/hosts.sh, each with its own Docker
# engine) runs once, in its own lane "hosts", with KINFRA_TEST_HOSTS=1 so that a
# missing harness fails its tests instead of skipping them.
#
# Usage: scripts/test.sh [LIBTEST OPTIONS...]   e.g. scripts/test.sh --nocapture
# Every lane runs even when an earlier one failed; the exit status is non-zero when
# any failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/build-test-image.sh || exit 1

failed=()
lane() {
    local name="$1"
    shift
    local started=$SECONDS
    echo "== ${name}: $*"
    if "$@"; then
        echo "== ${name}: passed in $((SECONDS - started))s"
    else
        echo "== ${name}: FAILED after $((SECONDS - started))s"
        failed+=("$name")
    fi
}

# Lane v1.
export KINFRA_COMPOSE=v1
echo "== lane v1 uses Compose v1: $(docker-compose version --short 2>&1 | head -n 1) (KINFRA_COMPOSE=v1, docker-compose)"
lane "v1: all tests but compose_stack, density and hosts" \
    cargo test --all-targets --no-fail-fast -- --skip compose_stack:: --skip density:: --skip hosts:: "$@"
lane "v1: density" \
    cargo test --test e2e --no-fail-fast -- density:: "$@"
lane "v1: compose_stack" \
    cargo test --test e2e --no-fail-fast -- compose_stack:: "$@"

# Lane hosts: remote hosts have their own engines, so Compose v1 here is enough.
# (`--lib` too: the first lane's `--skip hosts::` also skips the unit tests of src/hosts.rs.)
lane "hosts" env KINFRA_TEST_HOSTS=1 KINFRA_SSH_CONFIG="$PWD/target/hosts/ssh_config" \
    cargo test --lib --test e2e --no-fail-fast -- hosts:: "$@"

# Lane v2.
export DOCKER_CONFIG="$PWD/target/docker-config"
if scripts/install-compose-v2.sh; then
    export KINFRA_COMPOSE=v2
    echo "== lane v2 uses Compose v2: $(docker compose version 2>&1 | head -n 1) (KINFRA_COMPOSE=v2, DOCKER_CONFIG=$DOCKER_CONFIG)"
    # `stack::` also matches `compose_stack::`; both are named for the reader.
    lane "v2: stack, compose_stack, snapshot and mcp on a stack" \
        cargo test --test e2e --no-fail-fast -- stack:: compose_stack:: snapshot:: \
        mcp::the_tools_drive_a_running_stack "$@"
else
    echo "== lane v2: FAILED: Compose v2 could not be installed"
    failed+=("v2: install")
fi

if ((${#failed[@]})); then
    printf '== failed lanes: %s\n' "${failed[*]}"
    exit 1
fi
echo "== all lanes passed"
