#!/usr/bin/env bash
# A Colony test cluster on one machine: a coordinator and N nodes, each in its own Linux
# network namespace, joined by a bridge, so that nodes can be killed and cut off one by one.
#
#   cluster.sh up N                 coordinator + N nodes (+ a client namespace)
#   cluster.sh run CMD ARGS...      run a command in the client namespace, COLONY_COORDINATOR set
#   cluster.sh kill NODE            kill -9 a node (n1, n2, ...); start NODE starts it again
#   cluster.sh partition NODE       cut a node off the network; heal NODE joins it again
#   cluster.sh restart-coordinator  kill -9 the coordinator and start it again (same state)
#   cluster.sh status               namespaces, processes, links
#   cluster.sh down                 stop everything, remove every namespace (idempotent)
#
# Needs root and iproute2. Addresses come from 10.77.0.0/24 and exist only inside these
# namespaces. COLONY (default: the `colony` next to this repo's release or debug build, else on
# PATH) is the binary to run; the coordinator's state folder and the logs go to COLONY_NETNS_DIR
# (default /tmp/colony-netns; `up` starts from an empty state).
set -euo pipefail

prefix=colony-
net=${prefix}net
dir=${COLONY_NETNS_DIR:-/tmp/colony-netns}
port=7411
coordinator_ip=10.77.0.1
client_ip=10.77.0.2
root=$(cd "$(dirname "$0")/../.." && pwd)

colony_binary() {
    if [ -n "${COLONY:-}" ]; then echo "$COLONY"; return; fi
    for candidate in "$root/.build/release/colony" "$root/.build/debug/colony"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    command -v colony || { echo "cluster.sh: no colony binary (build it, or set COLONY)" >&2; exit 1; }
}

need_root() {
    [ "$(id -u)" -eq 0 ] || { echo "cluster.sh: needs root (network namespaces)" >&2; exit 1; }
    command -v ip >/dev/null || { echo "cluster.sh: needs iproute2 (ip)" >&2; exit 1; }
}

# add_host NAME IP: a namespace with eth0 on the bridge.
add_host() {
    local ns=$prefix$1 ip=$2 link=v$1
    ip netns add "$ns"
    ip link add "$link" type veth peer name eth0 netns "$ns"
    ip link set "$link" netns "$net"
    ip -n "$net" link set "$link" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

# The cluster's shared token (the coordinator listens beyond loopback): $COLONY_TOKEN, else a
# random one made by `up` in $dir/token.
cluster_token() {
    if [ -n "${COLONY_TOKEN:-}" ]; then echo "$COLONY_TOKEN"; else cat "$dir/token"; fi
}

start_coordinator() {
    COLONY_TOKEN=$(cluster_token) ip netns exec "${prefix}coord" "$(colony_binary)" coordinator --listen "tcp://$coordinator_ip:$port" \
        --state "$dir/state" >>"$dir/coord.log" 2>&1 &
    echo $! >"$dir/coord.pid"
}

start_node() {
    local name=$1
    COLONY_TOKEN=$(cluster_token) ip netns exec "$prefix$name" "$(colony_binary)" node --coordinator "tcp://$coordinator_ip:$port" \
        --name "$name" --threads "${COLONY_NODE_THREADS:-2}" --processes "${COLONY_NODE_PROCESSES:-2}" --allow-exec \
        >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

up() {
    local count=${1:?usage: cluster.sh up N}
    need_root
    down >/dev/null 2>&1 || true
    mkdir -p "$dir"
    rm -rf "$dir/state"
    [ -n "${COLONY_TOKEN:-}" ] || { od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$dir/token"; chmod 600 "$dir/token"; }
    ip netns add "$net"
    ip -n "$net" link add br0 type bridge
    ip -n "$net" link set br0 up
    add_host coord "$coordinator_ip"
    add_host client "$client_ip"
    start_coordinator
    for i in $(seq 1 "$count"); do
        add_host "n$i" "10.77.0.$((10 + i))"
        start_node "n$i"
    done
    echo "$count" >"$dir/nodes"
    echo "cluster up: coordinator tcp://$coordinator_ip:$port, nodes n1..n$count (logs in $dir)"
}

pid_of() { cat "$dir/$1.pid" 2>/dev/null || true; }

down() {
    # Every process in our namespaces, then the namespaces themselves.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for pidfile in "$dir"/*.pid; do
        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -f "$dir"/*.pid "$dir/nodes"
    echo "cluster down"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) need_root; down ;;
    run)
        shift
        need_root
        COLONY_TOKEN=$(cluster_token) COLONY_COORDINATOR="tcp://$coordinator_ip:$port" ip netns exec "${prefix}client" "$@"
        ;;
    kill)
        need_root
        pid=$(pid_of "${2:?usage: cluster.sh kill NODE}")
        [ -n "$pid" ] && kill -9 "$pid" && echo "killed $2 (pid $pid)"
        ;;
    start) need_root; start_node "${2:?usage: cluster.sh start NODE}"; echo "started $2" ;;
    partition) need_root; ip -n "$net" link set "v${2:?usage: cluster.sh partition NODE}" down; echo "partitioned $2" ;;
    heal) need_root; ip -n "$net" link set "v${2:?usage: cluster.sh heal NODE}" up; echo "healed $2" ;;
    restart-coordinator)
        need_root
        pid=$(pid_of coord)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        sleep 0.2
        start_coordinator
        echo "coordinator restarted on its state folder"
        ;;
    status)
        need_root
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
            name=${ns#"$prefix"}
            pid=$(pid_of "$name")
            state="no process"
            [ -n "$pid" ] && { kill -0 "$pid" 2>/dev/null && state="pid $pid running" || state="pid $pid dead"; }
            link=$(ip -n "$net" -br link show "v$name" 2>/dev/null | awk '{print $2}' || true)
            echo "$ns: $state${link:+, link $link}"
        done
        ;;
    *)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
