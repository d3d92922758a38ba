#!/usr/bin/env bash
# The test suite: unit tests, and end-to-end tests that drive the real binary against
# real git repositories and a real Docker engine (the local test image is built first;
# nothing is pulled).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/build-test-image.sh
cargo test --all-targets --no-fail-fast "$@"
