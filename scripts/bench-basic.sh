#!/usr/bin/env bash
# Benchmarks (hyperfine + a small probe), on a throwaway hello-stack repository:
#   1. `kinfra sandbox list` with 10 registered sandboxes, 2 of them running
#      (target: median <= 100 ms), and how many `docker` CLI calls it makes (now 0: it
#      reads the Engine API);
#   2. `kinfra --version` and `kinfra ports` (target: median <= 5 ms);
#   3. gate reaction: from the backend's first 200 to `up` returning (target <= 300 ms).
# Usage: scripts/bench-basic.sh [RUNS]   (or scripts/bench.sh basic [RUNS])   (needs Docker, hyperfine, python3)
set -euo pipefail

runs="${1:-30}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/bench.sh
. "$repo_dir/scripts/lib/bench.sh"
bench_setup --image

# shellcheck source=scripts/lib/hello-repo.sh
. "$repo_dir/scripts/lib/hello-repo.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-bench.XXXXXX")"
hello_sandbox_env "$work"
main="$work/dev/hello"
cleanup() {
    (cd "$main" && "$kinfra" sandbox destroy --all --force >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT
make_hello_repo "$repo_dir" "$main"
cd "$main"

for i in $(seq 1 10); do "$kinfra" sandbox create "bench-$i" >/dev/null 2>&1; done
for i in 1 2; do (cd "$work/dev/hello--bench-$i" && "$kinfra" sandbox up >/dev/null 2>&1); done

echo "== docker calls made by one \`kinfra sandbox list\`"
shim="$work/shim"
mkdir -p "$shim"
real_docker="$(command -v docker)"
printf '#!/bin/sh\necho "$*" >>"%s/calls"\nexec "%s" "$@"\n' "$shim" "$real_docker" >"$shim/docker"
chmod +x "$shim/docker"
: >"$shim/calls"
PATH="$shim:$PATH" "$kinfra" sandbox list >/dev/null
echo "docker calls: $(wc -l <"$shim/calls")"
sed 's/^/  docker /' "$shim/calls"

echo "== hyperfine ($runs runs each)"
hyperfine --shell=none --warmup 3 --runs "$runs" --export-json "$work/hf.json" \
    "$kinfra sandbox list" "$kinfra --version" "$kinfra ports" >/dev/null
python3 - "$work/hf.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command'].split('/')[-1]:<28} median {r['median']*1000:7.1f} ms   mean {r['mean']*1000:7.1f} ms ± {r['stddev']*1000:.1f}")
PY

echo "== gate reaction (backend serves after 3 s; time from its first 200 to \`up\` returning)"
python3 - "$kinfra" "$work/dev/hello--bench-3" <<'PY'
import os, statistics, subprocess, sys, threading, time, urllib.request
kinfra, sandbox = sys.argv[1], sys.argv[2]
port = next(int(l.split("=")[1]) for l in open(os.path.join(sandbox, ".env.sandbox")) if l.startswith("HELLO_API_PORT="))
reactions = []
for run in range(3):
    first_ok = []
    stop = threading.Event()
    def poll():
        while not stop.is_set():
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=0.2).status == 200:
                    first_ok.append(time.monotonic()); return
            except Exception:
                pass
            time.sleep(0.002)
    t = threading.Thread(target=poll); t.start()
    env = dict(os.environ, BACKEND_DELAY="3")
    r = subprocess.run([kinfra, "sandbox", "up"], cwd=sandbox, env=env, capture_output=True, text=True)
    done = time.monotonic()
    stop.set(); t.join()
    if r.returncode != 0 or not first_ok:
        sys.exit(f"up failed: {r.returncode}\n{r.stderr}")
    reactions.append((done - first_ok[0]) * 1000)
    print(f"run {run + 1}: {reactions[-1]:.0f} ms")
    subprocess.run([kinfra, "sandbox", "down"], cwd=sandbox, capture_output=True)
print(f"gate reaction median {statistics.median(reactions):.0f} ms")
PY
