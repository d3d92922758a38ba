#!/usr/bin/env bash
# kinfra's benchmarks (hyperfine, side by side in one run with what each is compared to).
#
#   scripts/bench.sh basic [RUNS]     list, --version, ports, gate reaction (bench-basic.sh)
#   scripts/bench.sh density [RUNS]   10 and 50 sandboxes: list against `docker ps -a` and
#                                     the CLI read path, destroy's docker calls, up against
#                                     its floor, create+destroy against git worktree
#                                     (bench-density.sh)
#   scripts/bench.sh create [RUNS]    create + destroy and list on a ktrdr-shaped repository;
#                                     BASELINE=<rev> measures an older kinfra beside
#                                     (bench-create.sh)
#   scripts/bench.sh data [RUNS]      snapshot create and restore of one volume against tar
#                                     through a container and `docker cp` (bench-data.sh;
#                                     DATA_MB=200)
#   scripts/bench.sh [all] [RUNS]     every suite, one after the other
#
# Needs Docker, hyperfine (apt-get install hyperfine) and python3.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
suite="${1:-all}"
[[ $# -gt 0 ]] && shift
case "$suite" in
basic) exec "$dir/bench-basic.sh" "$@" ;;
density) exec "$dir/bench-density.sh" "$@" ;;
create) exec "$dir/bench-create.sh" "$@" ;;
data) exec "$dir/bench-data.sh" "$@" ;;
all)
    "$dir/bench-basic.sh" "$@"
    "$dir/bench-density.sh" "$@"
    "$dir/bench-create.sh" "$@"
    "$dir/bench-data.sh" "$@"
    ;;
*)
    echo "usage: scripts/bench.sh [basic|density|create|data|all] [RUNS]" >&2
    exit 2
    ;;
esac
