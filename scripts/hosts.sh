#!/usr/bin/env bash
# Test hosts for `kinfra hosts` / remote sandboxes: two "machines" on this one, `h1` and
# `h2`. Each is
#   - a network namespace `kinfra-NAME` joined to this machine by a veth pair on a
#     private /30 (h1: 10.251.1.1 here, 10.251.1.2 there; h2: 10.251.2.0/30);
#   - a private mount namespace in which the host's HOME (`/root`) is its own directory
#     and `/tmp` is an empty tmpfs, so the remote side cannot see this machine's test
#     homes, registries, clones or origins (they all live under /tmp);
#   - its own Docker engine (own config file, data-root, exec-root, pidfile,
#     cgroup-parent, unix socket, and tcp://ADDRESS:2375 on its veth address for the
#     thin-mode tests, which point DOCKER_HOST at it), started with `nsenter --net=...` (not `ip netns
#     exec`, which remounts /sys and loses the cgroup v1 mounts), holding the test image
#     (copied with `docker save | docker load`, never pulled);
#   - its own sshd (Debian's openssh-server; host key, config and authorized_keys under
#     target/hosts/NAME), which hands every session DOCKER_HOST for that engine.
# The hosts' own files are under /var/lib/kinfra-test-hosts (visible to them), the
# sockets and pid files under /run/kinfra-hosts.
# Here: an ssh key and an ssh config (`Host h1`, `Host h2`) under target/hosts/, used by
# kinfra through KINFRA_SSH_CONFIG.
#
# Usage: scripts/hosts.sh up|down|status
#        scripts/hosts.sh sshd NAME PORT PIDFILE   another sshd in NAME's namespaces on
#                                                  PORT (for a test that kills it)
#        scripts/hosts.sh env                      the variables tests need
# `up` is idempotent (what runs already is kept); `down` stops only the processes whose
# pid files `up` wrote, then removes the namespaces and the hosts' state.
set -euo pipefail

HOSTS=(h1 h2)
IMAGE="kinfra-test/busybox:latest"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="$repo_dir/target/hosts"
# Sockets and exec roots want short paths (unix socket paths are limited to 108 bytes).
run_base="/run/kinfra-hosts"
# What a host itself reads (its engine's config and data, its HOME, its sshd's files)
# must be visible inside its mount namespace, whose /tmp is empty: never under /tmp,
# where a checkout of this repository may well be. `shared/` is for tests that need a
# directory both sides see (an origin the hosts can clone).
host_base="/var/lib/kinfra-test-hosts"

die() {
    echo "error: $*" >&2
    exit 1
}

index_of() {
    case "$1" in
        h1) echo 1 ;;
        h2) echo 2 ;;
        *) die "unknown test host \`$1\` (known: ${HOSTS[*]})" ;;
    esac
}

netns() { echo "kinfra-$1"; }
here_addr() { echo "10.251.$(index_of "$1").1"; }
there_addr() { echo "10.251.$(index_of "$1").2"; }
socket() { echo "$run_base/$1/docker.sock"; }

alive() {
    local pidfile="$1"
    [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

need_tools() {
    for tool in ip nsenter unshare dockerd docker ssh-keygen; do
        command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` is missing"
    done
    if [[ ! -x /usr/sbin/sshd ]]; then
        [[ "$(id -u)" -eq 0 ]] || die "openssh-server is not installed; run as root"
        # The package must not start a system-wide sshd: policy-rc.d says no.
        local policy=/usr/sbin/policy-rc.d made_policy=0
        if [[ ! -e "$policy" ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 0755 "$policy"
            made_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server >/dev/null 2>&1 \
            || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server >/dev/null 2>&1; } \
            || die "cannot install openssh-server"
        ((made_policy)) && rm -f "$policy"
    fi
    mkdir -p /run/sshd
}

# The machine's storage driver, for the hosts' engines (fuse-overlayfs on these
# machines; the machine's own daemon.json cannot be shared: it clashes with --data-root).
storage_driver() {
    docker info --format '{{.Driver}}' 2>/dev/null || echo ""
}

keys_and_config() {
    mkdir -p "$base"
    [[ -f "$base/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C kinfra-test -f "$base/id_ed25519"
    local cfg="$base/ssh_config.tmp"
    : >"$cfg"
    for h in "${HOSTS[@]}"; do
        cat >>"$cfg" <<EOF
Host $h
    HostName $(there_addr "$h")
    User root
    IdentityFile $base/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $base/known_hosts
    StrictHostKeyChecking yes
    LogLevel ERROR

EOF
    done
    # Extra sshds a test starts (`sshd NAME PORT PIDFILE`) answer with the same host key.
    cat >>"$cfg" <<EOF
Host 10.251.*
    User root
    IdentityFile $base/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $base/known_hosts
    StrictHostKeyChecking yes
    LogLevel ERROR
EOF
    mv "$cfg" "$base/ssh_config"
}

net_up() {
    local h="$1" ns i
    ns="$(netns "$h")"
    i="$(index_of "$h")"
    if ! ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
        ip netns add "$ns"
    fi
    if ! ip link show "kfh${i}a" >/dev/null 2>&1; then
        ip link add "kfh${i}a" type veth peer name "kfh${i}b"
        ip link set "kfh${i}b" netns "$ns"
        ip addr add "$(here_addr "$h")/30" dev "kfh${i}a"
        ip -n "$ns" addr add "$(there_addr "$h")/30" dev "kfh${i}b"
    fi
    ip link set "kfh${i}a" up
    ip -n "$ns" link set "kfh${i}b" up
    ip -n "$ns" link set lo up
}

docker_up() {
    local h="$1" dir="$host_base/$1" run="$run_base/$1" driver
    mkdir -p "$dir/docker" "$dir/home" "$run"
    if alive "$run/dockerd.pid"; then
        return 0
    fi
    driver="$(storage_driver)"
    if [[ -n "$driver" && "$driver" != "overlay2" ]]; then
        printf '{"storage-driver": "%s"}\n' "$driver" >"$dir/daemon.json"
    else
        printf '{}\n' >"$dir/daemon.json"
    fi
    # dockerd is the process that holds the host's mount namespace: sshd joins it.
    nohup setsid nsenter --net="/var/run/netns/$(netns "$h")" \
        unshare --mount --propagation private -- sh -c '
            mount --bind "$1" /root && mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 1
            shift
            exec "$@"' sh "$dir/home" \
        dockerd --config-file "$dir/daemon.json" \
        --data-root "$dir/docker" --exec-root "$run/exec" \
        --pidfile "$run/dockerd.pid" --cgroup-parent "kinfra-$h" \
        -H "unix://$(socket "$h")" -H "tcp://$(there_addr "$h"):2375" \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if docker -H "unix://$(socket "$h")" info >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$dir/dockerd.log" >&2
    die "the Docker engine of $h did not answer within 60 s"
}

image_up() {
    local h="$1"
    if docker -H "unix://$(socket "$h")" image inspect "$IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    docker image inspect "$IMAGE" >/dev/null 2>&1 || "$repo_dir/scripts/build-test-image.sh" >/dev/null
    docker save "$IMAGE" | docker -H "unix://$(socket "$h")" load >/dev/null
}

# sshd NAME LISTEN PIDFILE: an sshd inside NAME's network and mount namespaces.
start_sshd() {
    local h="$1" listen="$2" pidfile="$3" dir="$host_base/$1" run="$run_base/$1"
    [[ -f "$dir/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_ed25519_key"
    cp "$base/id_ed25519.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<EOF
HostKey $dir/ssh_host_ed25519_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxSessions 50
MaxStartups 50
SetEnv DOCKER_HOST=unix://$(socket "$h")
EOF
    nsenter --target "$(cat "$run/dockerd.pid")" --mount --net -- \
        /usr/sbin/sshd -f "$dir/sshd_config" -o "ListenAddress=$listen" -o "PidFile=$pidfile" \
        -E "$dir/sshd.log"
    for _ in $(seq 1 50); do
        alive "$pidfile" && return 0
        sleep 0.1
    done
    die "sshd of $h did not start (see $dir/sshd.log)"
}

sshd_up() {
    local h="$1" run="$run_base/$1"
    alive "$run/sshd.pid" || start_sshd "$h" "$(there_addr "$h"):22" "$run/sshd.pid"
    # known_hosts: the host's key under its alias and its address (any port).
    local key
    key="$(cut -d' ' -f1,2 "$host_base/$h/ssh_host_ed25519_key.pub")"
    {
        [[ -f "$base/known_hosts" ]] && grep -v -e "^$h " -e "^$(there_addr "$h") " -e "^\[$(there_addr "$h")\]" "$base/known_hosts"
        echo "$h $key"
        echo "$(there_addr "$h") $key"
        echo "[$(there_addr "$h")]:* $key"
    } >"$base/known_hosts.tmp" || true
    mv "$base/known_hosts.tmp" "$base/known_hosts"
}

up() {
    need_tools
    keys_and_config
    for h in "${HOSTS[@]}"; do
        net_up "$h"
        docker_up "$h"
        image_up "$h"
        sshd_up "$h"
    done
    # A marker in this machine's /tmp that no host may see.
    local marker
    marker="$(mktemp /tmp/.kinfra-hosts-here.XXXXXX)"
    for h in "${HOSTS[@]}"; do
        ssh -F "$base/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 "$h" \
            "test -S \"\${DOCKER_HOST#unix://}\" && test ! -e $marker" \
            || { rm -f "$marker"; die "cannot reach $h over ssh, or it sees this machine's /tmp"; }
    done
    rm -f "$marker"
    echo "test hosts up: ${HOSTS[*]} (ssh config: $base/ssh_config)"
}

stop_pid() {
    local pidfile="$1" wait_s="$2" pid
    if alive "$pidfile"; then
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 $((wait_s * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

down() {
    for h in "${HOSTS[@]}"; do
        local run="$run_base/$h" i
        i="$(index_of "$h")"
        stop_pid "$run/sshd.pid" 5
        stop_pid "$run/dockerd.pid" 30
        if ip netns list | grep -q "^$(netns "$h")\b"; then
            ip netns del "$(netns "$h")"
        fi
        ip link del "kfh${i}a" 2>/dev/null || true
        rm -rf "$run" "$host_base/$h/home" "$host_base/$h/docker"
    done
    rm -rf "$host_base/shared"
    echo "test hosts down"
}

status() {
    local rc=0
    for h in "${HOSTS[@]}"; do
        local run="$run_base/$h" d s
        d=down s=down
        alive "$run/dockerd.pid" && d=up
        alive "$run/sshd.pid" && s=up
        echo "$h: docker $d, sshd $s"
        [[ $d == up && $s == up ]] || rc=1
    done
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    sshd)
        [[ $# -eq 4 ]] || die "usage: $0 sshd NAME PORT PIDFILE"
        alive "$run_base/$2/dockerd.pid" || die "test host $2 is not up"
        start_sshd "$2" "$(there_addr "$2"):$3" "$4"
        ;;
    env) echo "KINFRA_SSH_CONFIG=$base/ssh_config" ;;
    *)
        echo "usage: $0 up|down|status|sshd NAME PORT PIDFILE|env" >&2
        exit 2
        ;;
esac
