#!/usr/bin/env bash
# Data throughput, on a throwaway hello-stack repository: `kinfra snapshot create` and
# `kinfra snapshot restore` of one volume (DATA_MB of random files; the sandbox is
# stopped, so nothing is stopped for the copy) against a plain tar through a container
# and `docker cp` of the same volume, in the same hyperfine run.
# Usage: scripts/bench-data.sh [RUNS] (or scripts/bench.sh data [RUNS]); DATA_MB=200
# (needs Docker, hyperfine, python3)
set -euo pipefail

runs="${1:-5}"
data_mb="${DATA_MB:-200}"
image=kinfra-test/busybox:latest
cp_ctr="kinfra-bench-cp-$$"
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
    docker rm -f "$cp_ctr" >/dev/null 2>&1 || true
    (cd "$main" && "$kinfra" sandbox destroy --all --force >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT
make_hello_repo "$repo_dir" "$main"
cd "$main"

echo "== data: snapshot and restore vs tar through a container and docker cp (${data_mb} MB, ${runs} runs each)"
"$kinfra" sandbox create bench-data >/dev/null 2>&1
id=hello--bench-data
vol="${id}_data"
snaps="$HOME/.kinfra-hello/snapshots"
# The volume exists once the sandbox ran; stopped, so nothing is stopped for the copy.
(cd "$work/dev/$id" && "$kinfra" sandbox up >/dev/null 2>&1 && "$kinfra" sandbox down >/dev/null 2>&1)
docker run --rm -v "$vol:/x" "$image" sh -c \
    "mkdir -p /x/bench && for i in \$(seq 1 $((data_mb / 4))); do head -c 4194304 /dev/urandom > /x/bench/f\$i; done"
docker create --name "$cp_ctr" -v "$vol:/x" "$image" true >/dev/null
hyperfine --shell=bash --runs "$runs" --export-json "$work/data.json" \
    --prepare "rm -rf '$snaps/bench'" --prepare true --prepare true --prepare true --prepare true \
    -n "kinfra snapshot create" "$kinfra snapshot create --instance $id --name bench >/dev/null 2>&1" \
    -n "tar through a container (read)" "docker run --rm -v $vol:/x $image tar -cf - -C / x > $work/plain.tar" \
    -n "docker cp (read)" "docker cp $cp_ctr:/x - > $work/cp.tar" \
    -n "kinfra snapshot restore" "$kinfra snapshot restore bench --instance $id --yes >/dev/null 2>&1" \
    -n "tar through a container (write)" \
    "docker run --rm -i -v $vol:/x $image sh -c 'rm -rf /x/..?* /x/.[!.]* /x/* && tar -xf - -C /' < $work/plain.tar" \
    >/dev/null
python3 - "$work/data.json" "$data_mb" <<'PY'
import json, sys
results = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
mb = float(sys.argv[2])
for name, t in results.items():
    print(f"{name:<34} median {t:6.2f} s   {mb / t:7.1f} MB/s")
read = results["kinfra snapshot create"] / results["tar through a container (read)"]
cp = results["kinfra snapshot create"] / results["docker cp (read)"]
write = results["kinfra snapshot restore"] / results["tar through a container (write)"]
print(f"snapshot create takes {read:.2f}x the time of tar through a container, {cp:.2f}x docker cp")
print(f"snapshot restore takes {write:.2f}x the time of tar through a container")
PY
