#!/usr/bin/env bash
# Density benchmarks (hyperfine), side by side in one run, on a throwaway one-service
# compose project with 50 slots:
#   1. `kinfra sandbox list` with 10 and with 50 registered sandboxes (a third of them
#      running) against a bare `docker ps -a` (goal: median <= 10 ms at 50, and no
#      slower than `docker ps -a`);
#   2. `kinfra sandbox destroy` of a stopped sandbox, and the docker CLI calls it makes
#      (goal: none);
#   3. `kinfra sandbox up` of the small stack against its floor: `compose up -d` of the
#      same project plus a loop waiting for the same HTTP check (goal: <= 1.05x);
#   4. `kinfra sandbox create` + `destroy` of a clean sandbox in a 400-file repository
#      against `git worktree add` + `git worktree remove` (goal: <= 1.5x).
# "Before" is the same binary reading Docker through the CLI, as the first version did
# (`KINFRA_DOCKER_READS=cli`), measured in the same hyperfine run. (The first version's
# own binary cannot read this benchmark's compose-based kinfra.toml.) With BASELINE=<rev>
# the kinfra of that git revision runs beside it in the list, up and create + destroy runs.
# Usage: [BASELINE=<rev>] scripts/bench-density.sh [RUNS]   (or scripts/bench.sh density [RUNS])
# (needs Docker, hyperfine, python3)
set -euo pipefail

runs="${1:-20}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/bench.sh
. "$repo_dir/scripts/lib/bench.sh"
bench_setup --image
compose="docker-compose"
docker compose version >/dev/null 2>&1 && [[ "${KINFRA_COMPOSE:-auto}" != v1 ]] && compose="docker compose"

work="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-density.XXXXXX")"
bench_baseline "$work"
# shellcheck source=scripts/lib/hello-repo.sh
. "$repo_dir/scripts/lib/hello-repo.sh"
hello_sandbox_env "$work"
main="$work/dev/dense"
cleanup() {
    (cd "$main" 2>/dev/null && "$kinfra" sandbox destroy --all --force >/dev/null 2>&1) || true
    $compose -p dense-floor -f "$main/compose.yaml" down -v >/dev/null 2>&1 || true
    bench_baseline_cleanup "$work"
    rm -rf "$work"
}
trap cleanup EXIT

# A one-service stack whose web port comes from kinfra, 50 slots, 400 files.
mkdir -p "$main"
cat >"$main/compose.yaml" <<'YAML'
services:
  web:
    image: kinfra-test/busybox:latest
    stop_grace_period: 1s
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo ok > /www/health && httpd -f -p 80 -h /www & wait"]
    ports:
      - "127.0.0.1:${DENSE_WEB_PORT:-21000}:80"
YAML
cat >"$main/kinfra.toml" <<'TOML'
base = "compose"
[project]
name = "dense"
sandbox_prefix = "dense--"
repo_check = ""
[slots]
count = 60
[ports.DENSE_WEB_PORT]
local_prod = 21000
sandbox = 21001
stride = 1
[gate]
timeout = 60
[[gate.checks]]
name = "web"
kind = "http"
port = "DENSE_WEB_PORT"
path = "/health"
TOML
printf '.env.sandbox\n' >"$main/.gitignore"
mkdir -p "$main/src"
for i in $(seq 1 397); do echo "file $i" >"$main/src/f$i.txt"; done
git -C "$main" init -q -b main
git -C "$main" add -A
git -C "$main" commit -q -m dense
cd "$main"

register() { # register N: sandboxes 1..N exist, every third running
    local n="$1"
    for i in $(seq 1 "$n"); do
        [[ -d "$work/dev/dense--s$i" ]] || "$kinfra" sandbox create "s$i" >/dev/null 2>&1
    done
    for i in $(seq 1 "$n"); do
        if (( i % 3 == 0 )); then (cd "$work/dev/dense--s$i" && "$kinfra" sandbox up >/dev/null 2>&1); fi
    done
}

median() {
    python3 - "$1" <<'PY'
import json, sys
for x in json.load(open(sys.argv[1]))["results"]:
    cmd, med = x["command"][:60], x["median"] * 1000
    print(f"  {cmd:<60} median {med:8.1f} ms")
PY
}

for n in 10 50; do
    register "$n"
    echo "== list with $n registered sandboxes ($((n / 3)) running), $runs runs"
    cmds=("$kinfra sandbox list" "docker ps -a" "env KINFRA_DOCKER_READS=cli $kinfra sandbox list")
    [[ -n "$baseline" ]] && cmds+=("$baseline sandbox list")
    hyperfine --shell=none --warmup 3 --runs "$runs" --export-json "$work/list$n.json" "${cmds[@]}" >/dev/null
    median "$work/list$n.json"
done

echo "== docker CLI calls made by one \`sandbox destroy\` of a stopped sandbox"
shim="$work/shim"
mkdir -p "$shim"
real_docker="$(command -v docker)"
printf '#!/bin/sh\necho "$*" >>"%s/calls"\nexec "%s" "$@"\n' "$shim" "$real_docker" >"$shim/docker"
printf '#!/bin/sh\necho "compose $*" >>"%s/calls"\nexec "%s" "$@"\n' "$shim" "$(command -v docker-compose)" >"$shim/docker-compose"
chmod +x "$shim/docker" "$shim/docker-compose"
: >"$shim/calls"
PATH="$shim:$PATH" "$kinfra" sandbox destroy s1 --yes >/dev/null 2>&1
echo "  docker calls (engine API reads): $(wc -l <"$shim/calls")"
"$kinfra" sandbox create s1 >/dev/null 2>&1
: >"$shim/calls"
PATH="$shim:$PATH" KINFRA_DOCKER_READS=cli "$kinfra" sandbox destroy s1 --yes >/dev/null 2>&1
echo "  docker calls (CLI reads, as before): $(wc -l <"$shim/calls")"

echo "== destroy of a stopped sandbox ($runs runs; each run re-creates it first)"
hyperfine --shell=none --runs "$runs" --prepare "$kinfra sandbox create s1" \
    --export-json "$work/destroy.json" "$kinfra sandbox destroy s1 --yes" >/dev/null
median "$work/destroy.json"

echo "== up of the small stack against its floor ($((runs / 2)) runs)"
"$kinfra" sandbox create upb >/dev/null 2>&1 || true
port="$(sed -n 's/^DENSE_WEB_PORT=//p' "$work/dev/dense--upb/.env.sandbox")"
floor_port=21999
# One poller process, started after compose returns, trying every 10 ms.
cat >"$work/floor.sh" <<SH
#!/bin/sh
DENSE_WEB_PORT=$floor_port $compose -p dense-floor -f "$main/compose.yaml" up -d >/dev/null 2>&1 || exit 1
exec python3 -c '
import time, urllib.request
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:$floor_port/health", timeout=0.2)
        break
    except Exception:
        time.sleep(0.01)
'
SH
chmod +x "$work/floor.sh"
hyperfine --runs "$((runs / 2))" \
    --prepare "cd $work/dev/dense--upb && $kinfra sandbox down >/dev/null 2>&1; DENSE_WEB_PORT=$floor_port $compose -p dense-floor -f $main/compose.yaml down >/dev/null 2>&1; true" \
    --export-json "$work/up.json" \
    "cd $work/dev/dense--upb && $kinfra sandbox up" "$work/floor.sh" \
    ${baseline:+"cd $work/dev/dense--upb && $baseline sandbox up"} >/dev/null
median "$work/up.json"
python3 - "$work/up.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"  up / floor = {r[0]['median'] / r[1]['median']:.2f}x")
if len(r) > 2:
    print(f"  baseline up / floor = {r[2]['median'] / r[1]['median']:.2f}x")
PY

echo "== create + destroy of a clean sandbox (400 files) against git worktree add + remove"
cat >"$work/kin.sh" <<SH
#!/bin/sh
cd "$main" && "$kinfra" sandbox create cd >/dev/null 2>&1 && "$kinfra" sandbox destroy cd --yes >/dev/null 2>&1
SH
cat >"$work/git.sh" <<SH
#!/bin/sh
git -C "$main" worktree add -q -b gitbench "$work/dev/gitbench" && git -C "$main" worktree remove "$work/dev/gitbench" && git -C "$main" branch -q -D gitbench
SH
chmod +x "$work/kin.sh" "$work/git.sh"
cmds=("$work/kin.sh" "$work/git.sh")
if [[ -n "$baseline" ]]; then
    sed "s|$kinfra|$baseline|g" "$work/kin.sh" >"$work/kin-base.sh"
    chmod +x "$work/kin-base.sh"
    cmds+=("$work/kin-base.sh")
fi
git -C "$main" branch -D dense--cd >/dev/null 2>&1 || true
hyperfine --runs "$runs" --export-json "$work/cd.json" "${cmds[@]}" >/dev/null
median "$work/cd.json"
python3 - "$work/cd.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"  kinfra / git = {r[0]['median'] / r[1]['median']:.2f}x")
if len(r) > 2:
    print(f"  baseline kinfra / git = {r[2]['median'] / r[1]['median']:.2f}x")
PY
