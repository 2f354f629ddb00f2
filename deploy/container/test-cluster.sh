#!/usr/bin/env bash
# The container test: Colony's static binary in an image built here (Containerfile.local on a
# debootstrap base, no registry), a coordinator container (state volume, token secret, port 7411
# published on the host's loopback) and 3 node containers on a podman network. From the host a
# `colony map` of 2,000 tasks runs through the published port while a node container is killed
# (podman kill) and the coordinator container is restarted. Afterwards: the map exited 0 with
# every output once, the counter is exact, and every container, network, volume and secret this
# run made is gone (also on failure). Then the same cluster from compose.yaml with Debian's
# podman-compose (1.0.3): up, a map of 500 tasks, its health check, down. Prints the time of
# each step. What podman-compose 1.0.3 does not do here: wait for depends_on's
# service_healthy (nodes start at once and retry until the coordinator answers), run health
# checks on a schedule (podman's timers need systemd; the test runs the check once), honour
# stop_grace_period (`down` stops with 1 s; the test runs `stop -t 45` first) and remove the
# project network on `down` (the test removes it).
#
# Installs podman, runc, netavark, aardvark-dns, debootstrap and podman-compose when missing. Podman's settings
# for this kind of host (runc: crun refuses hybrid cgroups; raised default ulimits: setrlimit
# is not permitted above them) go to a private containers.conf (CONTAINERS_CONF); the host's
# configuration is not touched. The base image (localhost/colony-base:bookworm, ~42 s to make)
# stays in podman's storage for the next run; the colony image is rebuilt and removed each run.
#
# Needs root; without it it says so and exits 0 (skipped). Run by `make test`.
#   COLONY_STATIC=PATH    the static colony to put in the image (default: build one with
#                         deploy/build-static.sh debug into .build-static)
#   CLUSTER_TASKS=N       tasks in the map (default 2000)
#   COLONY_DEBIAN_MIRROR  the mirror debootstrap uses (default: the one apt uses)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "container cluster: skipped (needs root: rootful podman networks and storage)"
    exit 0
fi
started=$(date +%s.%N)
step_start=$started
elapsed() { awk -v now="$(date +%s.%N)" -v start="$1" 'BEGIN { printf "%.1f", now - start }'; }
say() { echo "container cluster $(elapsed "$started")s: $*"; }
step() { say "$* ($(elapsed "$step_start") s)"; step_start=$(date +%s.%N); }

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v netavark >/dev/null || [ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || command -v aardvark-dns >/dev/null || missing+=(aardvark-dns)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v podman-compose >/dev/null || missing+=(podman-compose)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    step "installed ${missing[*]}"
fi

run_id=colonytest$$
work=$(mktemp -d /tmp/colony-containers.XXXXXX)
export CONTAINERS_CONF=$work/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
EOF
base=localhost/colony-base:bookworm
image=localhost/colony:$run_id
net=$run_id-net
volume=$run_id-state
secret=$run_id-token
coord=$run_id-coord
nodes=("$run_id-n1" "$run_id-n2" "$run_id-n3")
project=${run_id}c

# Everything podman-compose made for the project (it labels what it makes), also what its
# `down` leaves (1.0.3 keeps the network).
compose_leftovers() {
    local kind
    for kind in ps network volume; do
        case $kind in
            ps) podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}' ;;
            *) podman "$kind" ls --filter "label=io.podman.compose.project=$project" --format '{{.Name}}' ;;
        esac
    done 2>/dev/null | tr '\n' ' '
}
remove_compose() {
    podman ps -a -q --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
    podman network ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman network rm -f >/dev/null 2>&1 || true
    podman volume ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    podman rm -f -t 0 "$coord" "${nodes[@]}" >/dev/null 2>&1 || true
    podman network rm -f "$net" >/dev/null 2>&1 || true
    podman volume rm -f "$volume" >/dev/null 2>&1 || true
    podman secret rm "$secret" >/dev/null 2>&1 || true
    remove_compose
    podman rmi -f "$image" >/dev/null 2>&1 || true
    [ -n "${map_pid:-}" ] && kill "$map_pid" 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
    say "FAILED: $*"
    for c in "$coord" "${nodes[@]}" $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}' 2>/dev/null); do
        podman container exists "$c" 2>/dev/null || continue
        echo "--- podman logs $c (last 5 lines):"; podman logs --tail 5 "$c" 2>&1 || true
    done
    [ -f "$work/compose.log" ] && { echo "--- podman-compose (last 10 lines):"; tail -n 10 "$work/compose.log"; }
    exit 1
}

# The binary: a static colony (it must run on the minbase image, which has no libnng).
colony=${COLONY_STATIC:-}
if [ -z "$colony" ]; then
    colony=$("$root/deploy/build-static.sh" debug "$root/.build-static" 2>"$work/build.log") \
        || { tail -n 20 "$work/build.log"; fail "the static build failed"; }
    step "static colony built ($colony)"
fi
[ -x "$colony" ] || fail "no colony binary at $colony"
if ldd "$colony" 2>/dev/null | grep -qE 'libnng|libswift|libFoundation|libsqlite'; then
    fail "$colony is not static enough for the image: $(ldd "$colony" | grep -E 'libnng|libswift|libFoundation|libsqlite' | head -n 1)"
fi

if ! podman image exists "$base"; then
    mirror=${COLONY_DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" && $2 ~ /^https?:/ { print $2; exit }')}
    mirror=${mirror:-http://deb.debian.org/debian}
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; fail "debootstrap from $mirror failed"; }
    tar -C "$work/rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$work/rootfs"
    step "base image $base made with debootstrap from $mirror"
else
    step "base image $base reused"
fi

mkdir -p "$work/context"
cp "$colony" "$work/context/colony"
podman build -q -f "$here/Containerfile.local" -t "$image" "$work/context" >"$work/build-image.log" 2>&1 \
    || { tail -n 20 "$work/build-image.log"; fail "podman build failed"; }
step "image $image built"

token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s' "$token" >"$work/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman network create "$net" >/dev/null
podman volume create "$volume" >/dev/null
podman secret create "$secret" "$work/token" >/dev/null
podman run -d --log-driver k8s-file --name "$coord" --network "$net" -v "$volume:/var/lib/colony" \
    --secret "$secret,target=colony-token" -p "127.0.0.1:$port:7411" "$image" >/dev/null 2>>"$work/podman.log"
for n in "${nodes[@]}"; do
    podman run -d --log-driver k8s-file --name "$n" --network "$net" --secret "$secret,target=colony-token" "$image" \
        colony node --coordinator "tcp://$coord:7411" --token-file /run/secrets/colony-token \
        --name "${n#"$run_id-"}" --threads 2 >/dev/null 2>>"$work/podman.log"
done
export COLONY_COORDINATOR=tcp://127.0.0.1:$port COLONY_TOKEN=$token
for _ in $(seq 300); do
    "$colony" status --json 2>/dev/null | grep -q '"n3"' && "$colony" status --json | grep -q '"n1"' \
        && "$colony" status --json | grep -q '"n2"' && break
    sleep 0.1
done
summary=$("$colony" status --json 2>&1) || fail "no status through 127.0.0.1:$port: $summary"
for n in n1 n2 n3; do grep -q "\"$n\"" <<<"$summary" || fail "node $n did not join"; done
step "cluster up: $coord (port 127.0.0.1:$port) + n1 n2 n3 on network $net"

tasks=${CLUSTER_TASKS:-2000}
# Each task adds 1 to the counter `times` times (the sum lands with the task's success), so the
# counter tells how far the map is (its outputs come in input order, hence not as they finish).
times=${CLUSTER_TASK_INCREMENTS:-60000}
"$colony" counter set containers 0 >/dev/null
for _ in $(seq 1 "$tasks"); do echo "{\"counter\":\"containers\",\"times\":$times}"; done >"$work/inputs"
"$colony" map --handler count --inputs "$work/inputs" >"$work/out" 2>"$work/err" &
map_pid=$!
progress() { echo $(( $("$colony" counter get containers 2>/dev/null || echo 0) / times )); }
wait_for_progress() {  # until N tasks are done (or the map has ended)
    for _ in $(seq 1200); do
        [ "$(progress)" -ge "$1" ] && return
        kill -0 "$map_pid" 2>/dev/null || return
        sleep 0.05
    done
}
wait_for_progress $((tasks / 10))
podman kill "${nodes[0]}" >/dev/null
say "podman kill n1 ($(progress) tasks done)"
wait_for_progress $((tasks * 3 / 10))
done_before=$(progress)
[ "$done_before" -lt "$tasks" ] || fail "the map finished before the coordinator restart: raise CLUSTER_TASK_INCREMENTS"
podman restart "$coord" >/dev/null 2>>"$work/podman.log"
say "coordinator container restarted (podman restart: SIGTERM, then start on its volume; $done_before tasks done before)"
map_status=0
wait "$map_pid" || map_status=$?
map_pid=
[ "$map_status" -eq 0 ] || fail "colony map exited $map_status: $(tail -n 3 "$work/err")"
step "map of $tasks tasks done"

got=$(wc -l <"$work/out")
[ "$got" -eq "$tasks" ] || fail "the map printed $got outputs for $tasks inputs"
[ -z "$(grep -v "^$times\$" "$work/out" || true)" ] || fail "the map printed something other than $times"
counter=$("$colony" counter get containers)
[ "$counter" -eq $((tasks * times)) ] || fail "counter is $counter, expected exactly $((tasks * times))"

cleanup_check() {
    local left
    left=$(podman ps -a --format '{{.Names}}' | grep -c "^$run_id" || true)
    [ "$left" -eq 0 ] || fail "$left containers left behind"
    ! podman network exists "$net" || fail "network $net left behind"
    ! podman volume exists "$volume" || fail "volume $volume left behind"
    ! podman secret inspect "$secret" >/dev/null 2>&1 || fail "secret $secret left behind"
}
# Nodes first (SIGTERM drains them against a live coordinator), then the coordinator.
podman stop -t 10 "${nodes[@]}" >/dev/null 2>"$work/stop.log" || true
for n in "${nodes[@]}"; do
    # A node that needed SIGKILL: its last words, for the record (killed n1 exited 137 before).
    code=$(podman inspect --format '{{.State.ExitCode}}' "$n" 2>/dev/null || echo "?")
    [ "$n" = "${nodes[0]}" ] || [ "$code" = 0 ] || { say "note: ${n#"$run_id-"} exited $code on podman stop; its last log lines:"; podman logs --tail 4 "$n" 2>&1 | sed 's/^/    /'; }
done
podman rm -f -t 10 "${nodes[@]}" >/dev/null
podman rm -f -t 10 "$coord" >/dev/null
podman network rm -f "$net" >/dev/null
podman volume rm -f "$volume" >/dev/null
podman secret rm "$secret" >/dev/null
cleanup_check
step "containers, network, volume and secret removed"
say "passed: $tasks tasks, every output once, counter exactly $counter, across podman kill of a node and a coordinator container restart"

# The same cluster from compose.yaml with Debian's podman-compose (the image of this run, the
# token as a file secret, a free loopback port): up, a map, the health check, down.
compose() {
    COLONY_IMAGE=$image COLONY_PORT=$compose_port COLONY_METRICS_PORT=$compose_metrics_port \
        COLONY_TOKEN_FILE=$work/token podman-compose -p "$project" -f "$here/compose.yaml" "$@" >>"$work/compose.log" 2>&1
}
compose_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
compose_metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chmod 644 "$work/token"  # a bind mount (podman-compose's secrets): the image's colony user reads it
compose up -d || fail "podman-compose up failed"
export COLONY_COORDINATOR=tcp://127.0.0.1:$compose_port
for _ in $(seq 300); do
    [ "$("$colony" status --json 2>/dev/null | grep -o '"threads"' | wc -l)" -ge 3 ] && break
    sleep 0.1
done
joined=$("$colony" status --json 2>/dev/null | grep -o '"threads"' | wc -l)
[ "$joined" -ge 3 ] || fail "compose: $joined of 3 nodes joined"
step "podman-compose up: coordinator + 3 node replicas (port 127.0.0.1:$compose_port)"
compose_tasks=${COMPOSE_TASKS:-500}
"$colony" counter set compose 0 >/dev/null
for _ in $(seq 1 "$compose_tasks"); do echo "{\"counter\":\"compose\",\"times\":1000}"; done >"$work/compose-inputs"
"$colony" map --handler count --inputs "$work/compose-inputs" >"$work/compose-out" 2>"$work/compose-err" \
    || fail "compose: colony map failed: $(tail -n 3 "$work/compose-err")"
[ "$(grep -c '^1000$' "$work/compose-out")" -eq "$compose_tasks" ] && [ "$(wc -l <"$work/compose-out")" -eq "$compose_tasks" ] \
    || fail "compose: the map printed $(wc -l <"$work/compose-out") outputs for $compose_tasks inputs"
compose_counter=$("$colony" counter get compose)
[ "$compose_counter" -eq $((compose_tasks * 1000)) ] || fail "compose: counter is $compose_counter, expected $((compose_tasks * 1000))"
# The health check compose.yaml declares; podman runs it on a systemd timer, absent here, so
# it is run once by hand (depends_on's service_healthy is not waited for by podman-compose 1.0.3).
coordinator_container=$(podman ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=coordinator" --format '{{.Names}}')
podman healthcheck run "$coordinator_container" >/dev/null 2>&1 || fail "compose: the coordinator's health check failed"
step "compose: map of $compose_tasks tasks, every output once, counter exact; health check healthy"
# podman-compose 1.0.3's down stops with a 1 s timeout whatever stop_grace_period says; a
# stop with the grace time first lets the nodes drain and the coordinator stop cleanly.
compose stop -t 45 || fail "podman-compose stop failed"
codes=$(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}' \
    | xargs -r podman inspect --format '{{.Name}}={{.State.ExitCode}}' | tr '\n' ' ')
[ -z "$(tr ' ' '\n' <<<"$codes" | grep -v '=0$' | grep . || true)" ] || fail "compose: not every container stopped cleanly: $codes"
compose down -v || fail "podman-compose down failed"
# podman-compose 1.0.3's down removes containers and (with -v) volumes but not the network.
left=$(compose_leftovers)
[ "$left" = "${project}_default " ] || fail "compose down left: '$left' (expected only the network ${project}_default)"
remove_compose
left=$(compose_leftovers)
[ -z "$left" ] || fail "compose: left behind: $left"
podman rmi -f "$image" >/dev/null
step "podman-compose stop -t 45 (every container exited 0), down (and its network removed); image removed"
say "passed: compose.yaml with podman-compose: $compose_tasks tasks, counter exact, nothing left"
