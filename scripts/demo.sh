#!/usr/bin/env bash
# kinfra's main job, end to end, on a throwaway copy of examples/hello-stack:
# two sandboxes created and started (the gate passes), listed, local-prod created from
# a sandbox and destroyed from there (the sandbox is untouched), then everything
# stopped and destroyed. Uses a temporary HOME, so nothing of yours is touched.
#
# Usage: scripts/demo.sh   (after `cargo install --locked --path .`; needs Docker with
# Compose v2 or v1). Runs the installed `kinfra`; KINFRA_BIN=path picks another binary.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

kinfra="${KINFRA_BIN:-$(command -v kinfra || true)}"
if [[ -z "$kinfra" ]]; then
    echo "error: kinfra is not installed (not on PATH)" >&2
    echo "hint: cargo install --locked --path $repo_dir" >&2
    exit 1
fi
step "using $kinfra ($("$kinfra" --version)); building the local test image"
"$repo_dir/scripts/build-test-image.sh"

# shellcheck source=scripts/lib/hello-repo.sh
. "$repo_dir/scripts/lib/hello-repo.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-demo.XXXXXX")"
hello_sandbox_env "$work"
main="$work/dev/hello"

cleanup() {
    # Whatever happened, leave no containers, volumes or directories behind.
    (cd "$main" && "$kinfra" sandbox destroy --all --force >/dev/null 2>&1) || true
    (cd "$main" && "$kinfra" local-prod destroy --force >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT

step "a git repository holding the hello-stack app: $main"
make_hello_repo "$repo_dir" "$main"
cd "$main"

step "kinfra sandbox create feature-a   (a git worktree on slot 1)"
a="$("$kinfra" sandbox create feature-a)"
step "kinfra sandbox create 'Feature B!'   (slugified to feature-b, slot 2)"
b="$("$kinfra" sandbox create 'Feature B!')"

step "kinfra sandbox list"
"$kinfra" sandbox list

step "kinfra sandbox up   (in $a)"
(cd "$a" && "$kinfra" sandbox up)
step "kinfra sandbox up   (in $b)"
(cd "$b" && "$kinfra" sandbox up)

step "each backend answers on its own port"
for dir in "$a" "$b"; do
    url="$(cd "$dir" && "$kinfra" url HELLO_API_PORT)"
    printf '%s -> %s\n' "$url" "$(curl -fsS "$url" 2>/dev/null || python3 -c "import urllib.request,sys;print(urllib.request.urlopen(sys.argv[1]).read().decode().strip())" "$url")"
done

step "kinfra sandbox list   (live status, one docker call)"
"$kinfra" sandbox list

step "kinfra local-prod create   (from sandbox feature-a: an independent clone on slot 0)"
(cd "$a" && "$kinfra" local-prod create)
step "kinfra local-prod up   (in $work/dev/hello-prod, with the local-prod profile)"
(cd "$work/dev/hello-prod" && "$kinfra" local-prod up)
"$kinfra" sandbox list

step "kinfra local-prod destroy --yes   (run from sandbox feature-a: only local-prod goes)"
(cd "$a" && "$kinfra" local-prod destroy --yes)
"$kinfra" sandbox list

step "kinfra sandbox down   (in $a)"
(cd "$a" && "$kinfra" sandbox down)

step "kinfra sandbox destroy --yes   (both sandboxes: containers, volumes, worktrees; branches kept)"
(cd "$a" && "$kinfra" sandbox destroy --yes)
"$kinfra" sandbox destroy feature-b --yes

step "kinfra sandbox list   (nothing left)"
"$kinfra" sandbox list
git -C "$main" branch --list

step "done"
