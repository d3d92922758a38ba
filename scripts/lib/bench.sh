# Shared by the benchmarks (source it after setting repo_dir): hyperfine present, the
# release kinfra built (its path in $kinfra), and the local test image when asked for.
# Usage: bench_setup [--image]
bench_setup() {
    command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
    cargo build --release --quiet --manifest-path "$repo_dir/Cargo.toml"
    if [[ "${1:-}" == --image ]]; then
        "$repo_dir/scripts/build-test-image.sh" >/dev/null
    fi
    kinfra="$repo_dir/target/release/kinfra"
}

# bench_baseline WORK: when BASELINE names a git revision, build its release kinfra in a
# worktree under WORK (target dir BASELINE_TARGET, default WORK/baseline-target) and put
# its path in $baseline (empty without BASELINE). bench_baseline_cleanup WORK removes
# the worktree.
bench_baseline() {
    baseline=""
    [[ -n "${BASELINE:-}" ]] || return 0
    echo "== building the baseline kinfra at ${BASELINE}"
    git -C "$repo_dir" worktree add --detach -q "$1/baseline" "$BASELINE"
    cargo build --release --quiet --manifest-path "$1/baseline/Cargo.toml" \
        --target-dir "${BASELINE_TARGET:-$1/baseline-target}"
    baseline="${BASELINE_TARGET:-$1/baseline-target}/release/kinfra"
}
bench_baseline_cleanup() {
    if [[ -d "$1/baseline" ]]; then
        git -C "$repo_dir" worktree remove --force "$1/baseline" >/dev/null 2>&1 || true
    fi
}
