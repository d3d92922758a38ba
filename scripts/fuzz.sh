#!/usr/bin/env bash
# Time-boxed property fuzzing of the parsers (tests/fuzz.rs).
#
# Each target group (a module of tests/fuzz.rs) runs with a huge PROPTEST_CASES under
# `timeout SECONDS`, all of its properties at once. Running out the clock (exit 124)
# means "ran the full time, found nothing"; a failing property means failure.
# One random seed per run is printed; a failure is reproduced with
#   PROPTEST_RNG_SEED=<seed> PROPTEST_CASES=<n> cargo test --release --test e2e fuzz::<test>
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET=60]
# Env:   FUZZ_TARGETS="envfile git"  run only these groups
#        FUZZ_SEED=<u64>             fixed seed (default: random)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]* | 0)
        echo "usage: $0 [SECONDS_PER_TARGET=60]" >&2
        exit 2
        ;;
esac
read -r -a targets <<<"${FUZZ_TARGETS:-envfile registry config git docker probe slug secrets}"
seed="${FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
cases=1000000000

# Build once, so compile time is not counted against any target.
echo "building the release test binary..."
if ! cargo test --release --test e2e --no-run --quiet; then
    echo "error: build failed" >&2
    exit 2
fi
list="$(cargo test --release --test e2e --quiet -- --list --format terse 2>/dev/null | sed -n "s/^fuzz:://p")"

logdir="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-fuzz.XXXXXX")"
echo "seed ${seed}, ${secs}s per target, logs in ${logdir}"
echo
failed=0
rows=()
for t in "${targets[@]}"; do
    # All of the group's properties run at once and share the time.
    n="$(grep -c "^${t}::" <<<"$list" || true)"
    if [ "$n" -eq 0 ]; then
        rows+=("$(printf '%-10s %8s  %s' "$t" "-" "FAIL (no such target)")")
        failed=1
        continue
    fi
    log="${logdir}/${t}.log"
    start="$(date +%s.%N)"
    PROPTEST_CASES="$cases" PROPTEST_RNG_SEED="$seed" PROPTEST_VERBOSE=1 RUST_BACKTRACE=0 \
        timeout "$secs" cargo test --release --test e2e --quiet "fuzz::${t}::" -- \
        --nocapture --test-threads="$n" >"$log" 2>&1
    rc=$?
    took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
    # A failing case is announced (PROPTEST_VERBOSE=1) as soon as it is found, so a
    # failure still being shrunk when the clock runs out is not mistaken for a pass.
    found=0
    grep -qE '^proptest: Test case failed|^test .* \.\.\. FAILED|^test result: FAILED' "$log" && found=1
    if [ "$rc" -eq 124 ] && [ "$found" -eq 0 ]; then
        result="ok (${n} properties, ran full time)"
    elif [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]; then
        result="ok (${n} properties, all cases done)"
    else
        result="FAIL (exit ${rc}; see ${log})"
        failed=1
    fi
    rows+=("$(printf '%-10s %8s  %s' "$t" "$took" "$result")")
    printf '%s\n' "${rows[-1]}"
    if [ "${result#FAIL}" != "$result" ] && [ "$found" -eq 1 ]; then
        # Each finished failure: where, what, and the shrunk input's first lines.
        grep -E -A6 '^thread .* panicked at|^minimal failing input' "$log" |
            grep -vE '^--$|^stack backtrace|^\s+[0-9]+: ' | cut -c1-240 | head -n 24 | sed 's/^/    /'
        # A failure still being shrunk when the clock ran out: its last known reason.
        if ! grep -q '^minimal failing input' "$log"; then
            echo "    (shrinking cut short by the clock; last failure seen:)"
            grep '^proptest: Test case failed' "$log" | tail -n 1 | cut -c1-240 | sed 's/^/    /'
        fi
    fi
done

echo
printf '%-10s %8s  %s\n' TARGET SECONDS RESULT
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
    echo
    echo "FAILED (seed ${seed}); logs in ${logdir}"
    exit 1
fi
echo
echo "all targets ok (seed ${seed})"
