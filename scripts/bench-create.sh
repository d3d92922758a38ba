#!/usr/bin/env bash
# `sandbox create` + `destroy` and `sandbox list` (8 sandboxes, none running) on a
# ktrdr-shaped repository (the seed-era compose file of tests/fixtures, built-in layout,
# no kinfra.toml), side by side in one hyperfine run with the kinfra of BASELINE (a git
# revision, e.g. the first version f77fd2b, which had no compose model) when given.
# Usage: [BASELINE=<rev>] scripts/bench-create.sh [RUNS]   (or scripts/bench.sh create)
set -euo pipefail

runs="${1:-20}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/bench.sh
. "$repo_dir/scripts/lib/bench.sh"
bench_setup

work="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-create.XXXXXX")"
main="$work/dev/ktrdr"
cleanup() {
    (cd "$main" 2>/dev/null && "$kinfra" sandbox destroy --all --force >/dev/null 2>&1) || true
    bench_baseline_cleanup "$work"
    rm -rf "$work"
}
trap cleanup EXIT

bench_baseline "$work"

# From here on, HOME and git's identity are the benchmark's own.
# shellcheck source=scripts/lib/hello-repo.sh
. "$repo_dir/scripts/lib/hello-repo.sh"
hello_sandbox_env "$work"
mkdir -p "$main"
cp "$repo_dir/tests/fixtures/compose/ktrdr-seed.yml" "$main/docker-compose.yml"
printf '.env.sandbox\n' >"$main/.gitignore"
git -C "$main" init -q -b main
git -C "$main" remote add origin https://example.invalid/kpiteira/ktrdr.git
git -C "$main" add -A
git -C "$main" commit -q -m ktrdr
cd "$main"
for i in $(seq 1 8); do "$kinfra" sandbox create "l$i" >/dev/null 2>&1; done

report() {
    python3 - "$1" <<'PY'
import json, sys
for x in json.load(open(sys.argv[1]))["results"]:
    print(f"  {x['command'][:70]:<70} median {x['median'] * 1000:8.1f} ms")
PY
}

echo "== sandbox list, 8 registered sandboxes, none running ($runs runs)"
cmds=("$kinfra sandbox list")
[[ -n "$baseline" ]] && cmds+=("$baseline sandbox list")
hyperfine --shell=none --warmup 3 --runs "$runs" --export-json "$work/list.json" "${cmds[@]}" >/dev/null
report "$work/list.json"

echo "== sandbox create + destroy of a clean sandbox ($runs runs)"
for bin in "$kinfra" ${baseline:+"$baseline"}; do
    tag="$([[ "$bin" == "$kinfra" ]] && echo now || echo base)"
    cat >"$work/cd-$tag.sh" <<SH
#!/bin/sh
cd "$main" && "$bin" sandbox create cd-$tag >/dev/null 2>&1 && "$bin" sandbox destroy cd-$tag --yes >/dev/null 2>&1
SH
    chmod +x "$work/cd-$tag.sh"
done
cmds=("$work/cd-now.sh")
[[ -n "$baseline" ]] && cmds+=("$work/cd-base.sh")
hyperfine --runs "$runs" --export-json "$work/cd.json" "${cmds[@]}" >/dev/null
report "$work/cd.json"
