#!/usr/bin/env bash
# Build the local, pull-free test image used by examples/hello-stack and the
# end-to-end tests: kinfra-test/busybox:latest (FROM scratch + static busybox).
#
# Usage: scripts/build-test-image.sh [--rebuild]
#
# Idempotent: installs Debian's busybox-static only when it is missing and
# skips the build when the image already exists (unless --rebuild is given).
# Never pulls an image.
set -euo pipefail

IMAGE="kinfra-test/busybox:latest"
BUSYBOX="/bin/busybox"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dockerfile="${script_dir}/../examples/hello-stack/image/Dockerfile"

rebuild=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        -h|--help)
            echo "usage: $0 [--rebuild]"
            exit 0
            ;;
        *)
            echo "error: unknown argument: $arg" >&2
            echo "usage: $0 [--rebuild]" >&2
            exit 2
            ;;
    esac
done

if [[ ! -f "$dockerfile" ]]; then
    echo "error: Dockerfile not found at $dockerfile" >&2
    exit 1
fi

if ! command -v docker >/dev/null 2>&1; then
    echo "error: docker CLI not found" >&2
    exit 1
fi

# 1. Make sure the static busybox binary is present.
installed_pkg=0
if ! dpkg -s busybox-static >/dev/null 2>&1 || [[ ! -x "$BUSYBOX" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "error: busybox-static is not installed; run as root or: sudo apt-get install -y busybox-static" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_log="$(mktemp)"
    if ! { apt-get update && apt-get install -y busybox-static; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        echo "error: failed to install busybox-static" >&2
        exit 1
    fi
    rm -f "$apt_log"
    installed_pkg=1
fi
if [[ ! -x "$BUSYBOX" ]]; then
    echo "error: $BUSYBOX missing even after installing busybox-static" >&2
    exit 1
fi

# 2. Build the image unless it already exists.
if [[ "$rebuild" -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    msg="image $IMAGE already exists; skipped build (use --rebuild to force)"
    [[ "$installed_pkg" -eq 1 ]] && msg="installed busybox-static; $msg"
    echo "$msg"
    exit 0
fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/kinfra-test-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$dockerfile" "$ctx/Dockerfile"
cp "$BUSYBOX" "$ctx/busybox"
chmod 0755 "$ctx/busybox"

# Without the buildx plugin, a modern docker CLI only builds via the legacy
# builder; force it so DOCKER_BUILDKIT=1 in the environment cannot break us.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

if ! build_log="$(docker build --pull=false -t "$IMAGE" "$ctx" 2>&1)"; then
    echo "$build_log" >&2
    echo "error: docker build of $IMAGE failed" >&2
    exit 1
fi

bb_version="$({ "$BUSYBOX" 2>&1 || true; } | awk 'NR==1 {print $1, $2}')"
msg="built image $IMAGE (FROM scratch + ${bb_version:-busybox})"
[[ "$installed_pkg" -eq 1 ]] && msg="installed busybox-static; $msg"
echo "$msg"
