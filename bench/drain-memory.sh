#!/usr/bin/env bash
# What a coordinator holds after a large drain: its RSS and journal size when fresh, at the
# peak, right after N tasks were drained, and 60 s later (issue #13, item 8).
#   bench/drain-memory.sh [TASKS] [COLONY_BINARY]     (default 1000000, .build/release/colony)
set -euo pipefail
tasks=${1:-1000000}
colony=${2:-.build/release/colony}
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
url=tcp://127.0.0.1:$port
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' /proc/$1/status; }
db() { du -m "$dir/state/colony.db" 2>/dev/null | cut -f1; }
"$colony" coordinator --listen "$url" --state "$dir/state" 2>"$dir/coordinator.log" &
coordinator=$!
sleep 1
echo "fresh: rss ${s:-}$(rss $coordinator) MB, journal $(db) MB"
seq "$tasks" > "$dir/inputs"
# Submitted with no node: all of them queue (the peak), then one node drains them.
"$colony" map --coordinator "$url" --handler echo --inputs "$dir/inputs" > "$dir/out" 2>/dev/null &
map=$!
while [ "$("$colony" status --coordinator "$url" | sed -n 's/.* \([0-9]*\) queued.*/\1/p')" -lt "$tasks" ]; do sleep 0.5; done
echo "queued $tasks: rss $(rss $coordinator) MB, journal $(db) MB"
"$colony" node --coordinator "$url" --threads 2 --processes 0 --name n1 2>/dev/null &
start=$(date +%s.%N)
wait $map
end=$(date +%s.%N)
echo "drained in $(echo "$end - $start" | bc) s ($(wc -l < "$dir/out") outputs): rss $(rss $coordinator) MB, journal $(db) MB"
for t in 15 30 45 60; do
    sleep 15
    echo "${t} s after the drain: rss $(rss $coordinator) MB, journal $(db) MB"
done
"$colony" status --coordinator "$url" | head -1
python3 -c "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True); print('rows', c.execute('select count(*) from tasks').fetchone()[0], 'pages', c.execute('pragma page_count').fetchone()[0], 'free', c.execute('pragma freelist_count').fetchone()[0])" "$dir/state/colony.db"
