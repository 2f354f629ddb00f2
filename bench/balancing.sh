#!/usr/bin/env bash
# W5b and W5c of the balancing issue (#14) through the CLI, for any colony binary, so that two
# builds can be compared in one run:  bench/balancing.sh [COLONY_BINARY] ...
#   W5b: 2 nodes x 2 thread slots, a burst of 2,000 echo tasks, then 8 x sleep 1: makespan of
#        the sleeps (ideal 2.0 s).
#   W5c: 2 nodes x 2 slots, 400 sleeps (90% 1 ms, 10% 50 ms, fixed order): makespan / ideal.
set -euo pipefail
[ $# -eq 0 ] && set -- .build/release/colony
for colony in "$@"; do
    dir=$(mktemp -d)
    url=tcp://127.0.0.1:$((20000 + RANDOM % 20000))
    "$colony" coordinator --listen "$url" --state :memory: 2>/dev/null & coordinator=$!
    sleep 0.5
    # Builds with an io pool would run the sleeps there (all at once): keep them on the threads.
    io=(); "$colony" node --help 2>&1 | grep -q -- --io-slots && io=(--io-slots 0)
    "$colony" node --coordinator "$url" --threads 2 --processes 0 "${io[@]}" --name a 2>/dev/null & a=$!
    "$colony" node --coordinator "$url" --threads 2 --processes 0 "${io[@]}" --name b 2>/dev/null & b=$!
    until [ "$("$colony" status --coordinator "$url" 2>/dev/null | grep -o '[0-9]* node(s)' | cut -d' ' -f1)" = 2 ]; do sleep 0.1; done
    seq 2000 | "$colony" map --coordinator "$url" --handler echo > /dev/null
    start=$(date +%s.%N)
    printf '1\n1\n1\n1\n1\n1\n1\n1\n' | "$colony" map --coordinator "$url" --handler sleep > /dev/null
    w5b=$(echo "$(date +%s.%N) - $start" | bc)
    # 400 sleeps: every tenth 50 ms, the rest 1 ms; ideal = total / 4 slots.
    for i in $(seq 400); do if [ $((i % 10)) = 0 ]; then echo 0.05; else echo 0.001; fi; done > "$dir/w5c"
    ideal=$(awk '{ s += $1 } END { printf "%.4f", s / 4 }' "$dir/w5c")
    start=$(date +%s.%N)
    "$colony" map --coordinator "$url" --handler sleep --inputs "$dir/w5c" > /dev/null
    w5c=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%s: w5b_makespan_s %.3f  w5c_makespan_s %.3f  w5c_ideal_s %s  w5c_ratio %.3f\n' \
        "$colony" "$w5b" "$w5c" "$ideal" "$(echo "$w5c / $ideal" | bc -l)"
    kill -9 $coordinator $a $b 2>/dev/null; wait 2>/dev/null || true
    rm -rf "$dir"
done
