#!/usr/bin/env bash
# Benchmark of `kinfra sandbox list` across hosts, on the test hosts of
# scripts/hosts.sh (h1, h2) and a throwaway hello-stack repository with one sandbox
# here and one on each host (none started):
#   1. `sandbox list` across local + h1 + h2 vs the same list with no hosts registered
#      (target: at most one ssh round trip per host, all hosts at once, plus the local
#      cost);
#   2. per host: one ssh round trip over the shared connection (`ssh HOST true`), and
#      the host's own `kinfra sandbox list --json` through it.
# Usage: scripts/bench-hosts.sh [RUNS]   (needs `scripts/hosts.sh up`, hyperfine)
set -euo pipefail

runs="${1:-20}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo_dir/scripts/hosts.sh" status >/dev/null || { echo "the test hosts are not up: scripts/hosts.sh up" >&2; exit 1; }
# shellcheck source=scripts/lib/bench.sh
. "$repo_dir/scripts/lib/bench.sh"
bench_setup
export KINFRA_SSH_CONFIG="$repo_dir/target/hosts/ssh_config"

# shellcheck source=scripts/lib/hello-repo.sh
. "$repo_dir/scripts/lib/hello-repo.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-bench-hosts.XXXXXX")"
hello_sandbox_env "$work"
main="$work/dev/hello"
tag="b$$"
cleanup() {
    for s in "hello--$tag-h1" "hello--$tag-h2" "hello--$tag-here"; do
        (cd "$main" && "$kinfra" sandbox destroy "$s" --force --yes >/dev/null 2>&1) || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
make_hello_repo "$repo_dir" "$main"
cd "$main"

"$kinfra" hosts add h1 ssh://h1 >/dev/null 2>&1
"$kinfra" hosts add h2 ssh://h2 >/dev/null 2>&1
"$kinfra" sandbox create "$tag-here" >/dev/null 2>&1
"$kinfra" sandbox create "$tag-h1" --host h1 >/dev/null
"$kinfra" sandbox create "$tag-h2" --host h2 >/dev/null
"$kinfra" sandbox list

# The same local registry with no hosts: a state root of its own.
empty_state="$work/empty-state"
mkdir -p "$empty_state"
# The round trips go through a shared connection of their own, as kinfra's do.
control="$work/cm-%C"
ssh_cmd() {
    echo "ssh -F $KINFRA_SSH_CONFIG -o BatchMode=yes -o ControlMaster=auto -o ControlPath=$control -o ControlPersist=60 $1"
}
checkout1="$("$kinfra" sandbox list --json | python3 -c 'import json,sys; print([r["parent_repo"] for r in json.load(sys.stdin)["instances"] if r["host"]=="h1"][0])')"

hyperfine --warmup 3 --runs "$runs" --style basic \
    -n "list: local + h1 + h2" "$kinfra sandbox list" \
    -n "list: local only" "XDG_STATE_HOME=$empty_state $kinfra sandbox list" \
    -n "ssh round trip h1" "$(ssh_cmd h1) true" \
    -n "ssh round trip h2" "$(ssh_cmd h2) true" \
    -n "h1: kinfra sandbox list --json" "$(ssh_cmd h1) 'cd $checkout1 && ~/.local/bin/kinfra sandbox list --json'"
