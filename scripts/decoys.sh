#!/usr/bin/env bash
# Decoy compose projects: projects named like real ktrdr instances, as a developer's
# machine holds them (`ktrdr`, `ktrdr-prod`, `ktrdr--x`, `ktrdr--feature`,
# `ktrdr--my-feature`, and the example's `hello-prod`), which the test suite must never
# touch. Each decoy is a running container of the local test image (publishing no host
# port) on its own network, with a named volume holding a marker file, all labelled as
# Compose labels a project's objects, plus `kinfra.test.decoy=1`.
#
# Usage: scripts/decoys.sh up|check|down
#   up     make each decoy whose project is not on the engine yet; a project that is
#          there already is someone's and is left alone. What `up` made is recorded in
#          target/decoys/state (one line per decoy).
#   check  every recorded decoy still runs the same container, never restarted, on
#          its network, and its volume still holds its marker. Exit 1 naming each
#          change.
#   down   remove exactly what `up` recorded (and still carries the decoy label),
#          then the record.
#
# Needs Docker and the image kinfra-test/busybox:latest (scripts/build-test-image.sh).
set -euo pipefail

IMAGE="kinfra-test/busybox:latest"
PROJECT_LABEL="com.docker.compose.project"
DECOY_LABEL="kinfra.test.decoy"
DECOYS=(ktrdr ktrdr-prod ktrdr--x ktrdr--feature ktrdr--my-feature hello-prod)

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="$repo_dir/target/decoys"
state="$state_dir/state"

usage() {
    echo "usage: $0 up|check|down" >&2
    exit 2
}

die() {
    echo "error: $*" >&2
    exit 1
}

require_docker() {
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (\`docker info\`)"
}

# Whether Docker holds anything of project $1, by label or by the names a decoy of it
# would take.
project_exists() {
    local p="$1" filter="label=$PROJECT_LABEL=$1"
    [[ -n "$(docker ps -aq --filter "$filter")" ]] && return 0
    [[ -n "$(docker volume ls -q --filter "$filter")" ]] && return 0
    [[ -n "$(docker network ls -q --filter "$filter")" ]] && return 0
    docker container inspect "$p-app-1" >/dev/null 2>&1 && return 0
    docker volume inspect "${p}_data" >/dev/null 2>&1 && return 0
    docker network inspect "${p}_default" >/dev/null 2>&1 && return 0
    return 1
}

# Whether the state file records a decoy of project $1.
recorded() {
    [[ -f "$state" ]] && cut -f1 "$state" | grep -qxF -- "$1"
}

# The value of label $2 on Docker object $1 (`container`, `volume`, `network`) $3.
label_of() {
    local labels=".Labels"
    [[ "$1" == container ]] && labels=".Config.Labels"
    docker "$1" inspect -f "{{index $labels \"$2\"}}" "$3" 2>/dev/null || true
}

# The marker file of volume $1, read through container $2 when it runs.
marker_of() {
    local volume="$1" container="$2"
    if [[ "$(docker inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" == "true" ]]; then
        docker exec "$container" cat /data/marker 2>/dev/null || true
    else
        docker run --rm --network none --label "$DECOY_LABEL=1" \
            -v "$volume:/data:ro" "$IMAGE" cat /data/marker 2>/dev/null || true
    fi
}

make_decoy() {
    local p="$1"
    local container="$p-app-1" volume="${p}_data" network="${p}_default"
    local marker
    marker="decoy $p $(date -u +%Y%m%dT%H%M%SZ) $$-$RANDOM"
    # Undo what this call made when a later step fails.
    local made=()
    undo() {
        local m
        for m in "${made[@]}"; do
            docker "${m%% *}" rm -f "${m#* }" >/dev/null 2>&1 || docker "${m%% *}" rm "${m#* }" >/dev/null 2>&1 || true
        done
    }
    if ! docker volume create \
        --label "$PROJECT_LABEL=$p" --label "com.docker.compose.volume=data" \
        --label "$DECOY_LABEL=1" "$volume" >/dev/null; then
        die "could not create the volume \`$volume\`"
    fi
    made+=("volume $volume")
    if ! docker network create \
        --label "$PROJECT_LABEL=$p" --label "com.docker.compose.network=default" \
        --label "$DECOY_LABEL=1" "$network" >/dev/null; then
        undo
        die "could not create the network \`$network\`"
    fi
    made=("network $network" "${made[@]}")
    local id
    if ! id="$(docker run -d --name "$container" --network "$network" \
        --label "$PROJECT_LABEL=$p" --label "com.docker.compose.service=app" \
        --label "com.docker.compose.container-number=1" \
        --label "com.docker.compose.oneoff=False" --label "$DECOY_LABEL=1" \
        -v "$volume:/data" -e "MARKER=$marker" "$IMAGE" \
        sh -c 'printf "%s\n" "$MARKER" > /data/marker && trap "exit 0" TERM INT && while :; do sleep 3600 & wait $!; done')"; then
        undo
        die "could not start the container \`$container\`"
    fi
    made=("container $id" "${made[@]}")
    # The container writes the marker as it starts.
    for _ in $(seq 1 50); do
        [[ "$(marker_of "$volume" "$id")" == "$marker" ]] && break
        sleep 0.2
    done
    if [[ "$(marker_of "$volume" "$id")" != "$marker" ]]; then
        undo
        die "the decoy \`$p\` did not write its marker"
    fi
    local started
    started="$(docker inspect -f '{{.State.StartedAt}}' "$id")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$id" "$volume" "$network" "$marker" "$started" >>"$state"
    echo "decoy \`$p\`: container ${id:0:12}, volume \`$volume\`, network \`$network\`"
}

cmd_up() {
    require_docker
    docker image inspect "$IMAGE" >/dev/null 2>&1 ||
        die "the image \`$IMAGE\` is missing: run scripts/build-test-image.sh first"
    mkdir -p "$state_dir"
    touch "$state"
    local p
    for p in "${DECOYS[@]}"; do
        if recorded "$p"; then
            echo "decoy \`$p\`: already up"
        elif project_exists "$p"; then
            echo "decoy \`$p\`: a project of that name is already on the engine; left alone"
        else
            make_decoy "$p"
        fi
    done
}

cmd_check() {
    [[ -f "$state" ]] || {
        echo "error: no decoys recorded in \`$state\`: run \`$0 up\` first" >&2
        exit 2
    }
    require_docker
    local changes=() count=0
    local p id volume network marker started
    while IFS=$'\t' read -r p id volume network marker started; do
        count=$((count + 1))
        local info
        if ! info="$(docker inspect -f '{{.State.Running}} {{.State.StartedAt}}' "$id" 2>/dev/null)"; then
            changes+=("\`$p\`: its container ${id:0:12} was removed")
        else
            [[ "${info%% *}" == "true" ]] || changes+=("\`$p\`: its container ${id:0:12} is not running")
            [[ "${info#* }" == "$started" ]] ||
                changes+=("\`$p\`: its container ${id:0:12} was restarted (started $started, now ${info#* })")
        fi
        if ! docker volume inspect "$volume" >/dev/null 2>&1; then
            changes+=("\`$p\`: its volume \`$volume\` was removed")
        elif [[ "$(marker_of "$volume" "$id")" != "$marker" ]]; then
            changes+=("\`$p\`: the marker in volume \`$volume\` is gone or changed")
        fi
        docker network inspect "$network" >/dev/null 2>&1 ||
            changes+=("\`$p\`: its network \`$network\` was removed")
    done <"$state"
    if ((${#changes[@]})); then
        echo "error: decoy projects were touched:" >&2
        printf '  %s\n' "${changes[@]}" >&2
        exit 1
    fi
    echo "decoys: all $count intact"
}

cmd_down() {
    [[ -f "$state" ]] || {
        echo "decoys: none recorded"
        return 0
    }
    require_docker
    local left=() p id volume network marker started
    while IFS=$'\t' read -r p id volume network marker started; do
        local ok=1
        # Only objects that still carry the decoy label: never something else that
        # took a name since.
        if docker container inspect "$id" >/dev/null 2>&1; then
            if [[ "$(label_of container "$DECOY_LABEL" "$id")" == "1" ]]; then
                docker rm -f "$id" >/dev/null || ok=0
            fi
        fi
        if docker volume inspect "$volume" >/dev/null 2>&1; then
            if [[ "$(label_of volume "$DECOY_LABEL" "$volume")" == "1" ]]; then
                docker volume rm "$volume" >/dev/null || ok=0
            else
                echo "decoy \`$p\`: volume \`$volume\` is not the decoy's any more; left alone" >&2
            fi
        fi
        if docker network inspect "$network" >/dev/null 2>&1; then
            if [[ "$(label_of network "$DECOY_LABEL" "$network")" == "1" ]]; then
                docker network rm "$network" >/dev/null || ok=0
            else
                echo "decoy \`$p\`: network \`$network\` is not the decoy's any more; left alone" >&2
            fi
        fi
        if ((ok)); then
            echo "decoy \`$p\`: removed"
        else
            left+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$p" "$id" "$volume" "$network" "$marker" "$started")")
        fi
    done <"$state"
    if ((${#left[@]})); then
        printf '%s\n' "${left[@]}" >"$state"
        die "some decoys could not be removed; still recorded in \`$state\`"
    fi
    rm -f "$state"
}

[[ $# -eq 1 ]] || usage
case "$1" in
    up) cmd_up ;;
    check) cmd_check ;;
    down) cmd_down ;;
    *) usage ;;
esac
