#!/usr/bin/env bash
# The chaos test: a coordinator and three nodes in network namespaces (cluster.sh) run
# 20,000 tasks, half in the thread pool and half in the process pool, each adding to a
# cluster counter, a tenth of them under a limit of 2, while
#   a node is killed with SIGKILL (and started again later),
#   a node is cut off the network and healed,
#   the coordinator is killed with SIGKILL and restarted on its state folder.
# Afterwards: every `colony map` run exited 0 with every output once and in order, the counter
# is exact (tasks x increments), the limit was never exceeded, and no namespace or process is left.
#
# Needs root and iproute2; without them it says so and exits 0 (skipped). Run by `make test`.
# One at a time per machine: the namespaces have fixed names (colony-*), and `up` clears them.
# CHAOS_TASKS=N changes the number of tasks (default 20000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cluster="$here/cluster.sh"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
    echo "chaos: skipped (needs root and working 'ip netns')"
    exit 0
fi
export COLONY_NETNS_DIR=${COLONY_NETNS_DIR:-/tmp/colony-chaos}
work=$COLONY_NETNS_DIR/chaos
tasks=${CHAOS_TASKS:-20000}
half=$((tasks / 2))
started=$(date +%s.%N)
elapsed() { awk -v now="$(date +%s.%N)" -v start="$started" 'BEGIN { printf "%.1f", now - start }'; }
say() { echo "chaos $(elapsed)s: $*"; }
# The binary `make test` just built (debug), unless COLONY names another.
root=$(cd "$here/../.." && pwd)
export COLONY=${COLONY:-$root/.build/debug/colony}
[ -x "$COLONY" ] || COLONY=$root/.build/release/colony
[ -x "$COLONY" ] || { echo "chaos: no colony binary (swift build first, or set COLONY)" >&2; exit 1; }
fail() {
    say "FAILED: $*"
    echo "--- logs in $COLONY_NETNS_DIR:"; tail -n 5 "$COLONY_NETNS_DIR"/*.log || true
    "$cluster" down >/dev/null 2>&1 || true
    exit 1
}
trap '"$cluster" down >/dev/null 2>&1 || true' EXIT

"$cluster" up 3 >/dev/null
rm -rf "$work"
mkdir -p "$work"
run() { "$cluster" run "$COLONY" "$@"; }

# Wait for the three nodes, then set the stage.
for _ in $(seq 200); do
    run status --json 2>/dev/null | grep -q '"n3"' && break
    sleep 0.1
done
run status --json | grep -q '"n3"' || fail "the nodes did not join"
run limit set chaos 2 >/dev/null
run counter set chaos 0 >/dev/null
say "cluster up: coordinator + n1 n2 n3; $tasks tasks (a tenth under the limit 'chaos' of 2)"

# Inputs: every task adds $times to the counter 'chaos' with its success (one at a time,
# so that a task takes a moment and the chaos lands mid-run).
times=${CHAOS_TASK_INCREMENTS:-3000}
for i in $(seq 1 "$half"); do echo "{\"counter\":\"chaos\",\"times\":$times}"; done >"$work/inputs"
head -n $((half / 5)) "$work/inputs" >"$work/limited"
tail -n $((half - half / 5)) "$work/inputs" >"$work/free"
run map --handler count --pool thread --inputs "$work/free" >"$work/thread.out" 2>"$work/thread.err" &
thread_map=$!
run map --handler count --pool process --inputs "$work/inputs" >"$work/process.out" 2>"$work/process.err" &
process_map=$!
run map --handler count --pool thread --uses chaos --inputs "$work/limited" >"$work/limited.out" 2>"$work/limited.err" &
limited_map=$!

progress() { cat "$work"/*.out 2>/dev/null | wc -l; }
wait_for_progress() {  # wait until N outputs are out (or the maps are done)
    for _ in $(seq 600); do
        [ "$(progress)" -ge "$1" ] && return
        kill -0 $thread_map 2>/dev/null || kill -0 $process_map 2>/dev/null || return
        sleep 0.1
    done
}

wait_for_progress $((tasks / 10))
"$cluster" kill n1 >/dev/null; say "kill -9 n1 ($(progress) outputs so far)"
wait_for_progress $((tasks / 4))
"$cluster" restart-coordinator >/dev/null; say "kill -9 and restart of the coordinator ($(progress) outputs so far)"
wait_for_progress $((tasks * 2 / 5))
"$cluster" partition n2 >/dev/null; say "partitioned n2 ($(progress) outputs so far)"
sleep 3.5
"$cluster" heal n2 >/dev/null; say "healed n2 ($(progress) outputs so far)"
"$cluster" start n1 >/dev/null; say "n1 started again"

status=0
for pid in $thread_map $process_map $limited_map; do
    wait "$pid" || status=$?
done
[ "$status" -eq 0 ] || fail "a colony map exited $status: $(cat "$work"/*.err | tail -n 3)"
took=$(elapsed)

# Every output once, in order: each line of each map is the handler's output, $times.
for pair in thread:free process:inputs limited:limited; do
    part=${pair%%:*}
    expected=$(wc -l <"$work/${pair##*:}")
    got=$(wc -l <"$work/$part.out")
    [ "$got" -eq "$expected" ] || fail "$part map printed $got outputs for $expected inputs"
    [ -z "$(grep -v "^$times\$" "$work/$part.out" || true)" ] || fail "$part map printed something other than $times"
done
counter=$(run counter get chaos)
[ "$counter" -eq $((tasks * times)) ] || fail "counter chaos is $counter, expected exactly $((tasks * times))"
high=$(run limit list | awk '$1 == "chaos" {print $4}')
[ "${high:-0}" -le 2 ] || fail "limit chaos reached $high with size 2"
summary=$(run status --json)
retried=$(echo "$summary" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["retried"], s["stale_results_dropped"])' 2>/dev/null || echo "?")

"$cluster" down >/dev/null
trap - EXIT
leftover=$(ip netns list 2>/dev/null | grep -c '^colony-' || true)
[ "$leftover" -eq 0 ] || fail "$leftover namespaces left behind"
pgrep -f "colony (coordinator|node) .*10\.77\.0\.1" >/dev/null && fail "cluster processes left behind"
say "passed: $tasks tasks in $took s, every output once and in order, counter exactly $counter," \
    "limit at most ${high:-0} of 2 (whole run, across the restart), retried/stale results dropped: $retried, nothing left behind"
