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
