#!/usr/bin/env bash
# The Slurm test: a single-host Slurm (munged, slurmctld, slurmd with a private SLURM_CONF in a
# temporary folder) runs deploy/slurm/colony.sbatch as one job (coordinator + node); a
# `colony map` from outside the job runs against it; `scancel` ends it. Afterwards every
# process of the job is gone, the daemons are stopped, and nothing is left (temporary folder,
# /sys/fs/cgroup/freezer/slurm_* of this slurmd). Then `colony coordinator --allocate slurm`:
# a map makes it sbatch node jobs (at most 2), which leave by themselves once idle; its
# metrics count them. Prints the time of each step.
#
# Installs slurm-wlm and munge when missing. Settings that work on this kind of host:
# proctrack/cgroup with cgroup/v1 (proctrack/linuxproc misses processes that ignore SIGTERM or
# call setsid; without cgroup.conf launches fail with "cgroup namespace 'freezer' not mounted"),
# task/none, jobacct_gather/none. munged gets its own key and socket in the temporary folder, so
# a host's own munge is neither used nor disturbed.
#
# Needs root; without it it says so and exits 0 (skipped). Run by `make test`.
#   COLONY=PATH   the binary (default: this repo's debug build, else its release build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm: skipped (needs root: slurmd and munged run as root and munge)"
    exit 0
fi
started=$(date +%s.%N)
step_start=$started
elapsed() { awk -v now="$(date +%s.%N)" -v start="$1" 'BEGIN { printf "%.1f", now - start }'; }
say() { echo "slurm $(elapsed "$started")s: $*"; }
step() { say "$* ($(elapsed "$step_start") s)"; step_start=$(date +%s.%N); }

missing=()
command -v slurmctld >/dev/null || missing+=(slurm-wlm)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    step "installed ${missing[*]}"
fi
# Debian's packages start their services where systemd runs; this test's daemons are its own.

colony=${COLONY:-$root/.build/debug/colony}
[ -x "$colony" ] || colony=$root/.build/release/colony
[ -x "$colony" ] || { echo "slurm: no colony binary (swift build first, or set COLONY)" >&2; exit 1; }
colony=$(readlink -f "$colony")

work=$(mktemp -d /tmp/colony-slurm.XXXXXX)
chmod 755 "$work"
node=colonytest$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
colony_port=$(free_port)
export SLURM_CONF=$work/etc/slurm.conf
pids=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "${job:-}" ] && scancel "$job" >/dev/null 2>&1 || true
    stop_daemons
    remove_cgroups
    rm -rf "$work"
    exit "$status"
}
stop_daemons() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    pids=()
}
remove_cgroups() {
    # slurmd's cgroup/v1 folders for this node: whatever still runs in them (a step daemon
    # orphaned by a failed run) is killed, then the folders go, deepest first.
    local dir pid
    for dir in /sys/fs/cgroup/*/slurm_"$node"; do
        [ -d "$dir" ] || continue
        for _ in $(seq 50); do
            pid=$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
            [ -z "$pid" ] && break
            kill -KILL $pid 2>/dev/null || true
            sleep 0.1
        done
        find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
    say "FAILED: $*"
    for log in slurmctld slurmd munged alloc-coordinator; do echo "--- $log.log (last 5 lines):"; tail -n 25 "$work/$log.log" 2>/dev/null || true; done
    echo "--- job output (last 10 lines):"; tail -n 10 "$work/job.out" 2>/dev/null || true
    exit 1
}

# munged: its own key and socket, run as the munge user (it refuses root).
mkdir -p "$work/munge" "$work/etc" "$work/state" "$work/spool" "$work/submit"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$work/munge"
chmod 755 "$work/munge"
chmod 400 "$work/munge/munge.key"
socket=$work/munge/munge.socket
runuser -u munge -- /usr/sbin/munged --foreground --socket="$socket" --key-file="$work/munge/munge.key" \
    --pid-file="$work/munge/munged.pid" --seed-file="$work/munge/munged.seed" --log-file="$work/munge/munged.log" \
    >"$work/munged.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
[ -S "$socket" ] || fail "munged did not start"

cat >"$SLURM_CONF" <<EOF
ClusterName=colonytest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=30
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=colonytest Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
echo "CgroupPlugin=cgroup/v1" >"$work/etc/cgroup.conf"
slurmctld -D -i >>"$work/slurmctld.log" 2>&1 &
pids+=($!)
slurmd -D -N "$node" >>"$work/slurmd.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
    sinfo -h -n "$node" -o '%T' 2>/dev/null | grep -qx idle && break
    sleep 0.1
done
sinfo -h -n "$node" -o '%T' 2>/dev/null | grep -qx idle || fail "node $node is not idle: $(sinfo -h -n "$node" -o '%T %E' 2>&1)"
step "munged, slurmctld and slurmd up (node $node idle)"

# The job: colony.sbatch serving (no WORK.sh) until scancel, with a token made here.
(umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$work/submit/token")
job=$(cd "$work/submit" && COLONY=$colony COLONY_PORT=$colony_port COLONY_TOKEN_FILE=$work/submit/token \
    sbatch --parsable --nodes=1 --cpus-per-task=2 --output="$work/job.out" "$here/colony.sbatch") \
    || fail "sbatch failed"
export COLONY_COORDINATOR=tcp://127.0.0.1:$colony_port COLONY_TOKEN
COLONY_TOKEN=$(cat "$work/submit/token")
for _ in $(seq 300); do
    "$colony" status --json 2>/dev/null | grep -q '"threads"' && break
    squeue -h -j "$job" >/dev/null 2>&1 || break
    sleep 0.1
done
"$colony" status --json 2>/dev/null | grep -q '"threads"' || fail "the job's cluster did not come up (job $job: $(squeue -h -j "$job" -o '%T %R' 2>&1))"
grep -q "^COLONY_COORDINATOR=tcp://127.0.0.1:$colony_port\$" "$work/job.out" \
    || fail "the job did not print its coordinator"
step "job $job running: coordinator + node, tcp://127.0.0.1:$colony_port"

tasks=${SLURM_TASKS:-500}
times=1000
"$colony" counter set slurm 0 >/dev/null
for _ in $(seq 1 "$tasks"); do echo "{\"counter\":\"slurm\",\"times\":$times}"; done >"$work/inputs"
"$colony" map --handler count --inputs "$work/inputs" >"$work/out" 2>"$work/err" \
    || fail "colony map failed: $(tail -n 3 "$work/err")"
[ "$(wc -l <"$work/out")" -eq "$tasks" ] || fail "the map printed $(wc -l <"$work/out") outputs for $tasks inputs"
[ -z "$(grep -v "^$times\$" "$work/out" || true)" ] || fail "the map printed something other than $times"
counter=$("$colony" counter get slurm)
[ "$counter" -eq $((tasks * times)) ] || fail "counter is $counter, expected exactly $((tasks * times))"
step "map of $tasks tasks through the job's coordinator: every output once, counter exactly $counter"

# Every process of the job: whatever its cgroup holds (the batch script, srun, the steps).
job_pids() {
    find /sys/fs/cgroup/freezer/slurm_"$node"/ /sys/fs/cgroup/freezer/slurm/ -path "*job_$job*" -name cgroup.procs \
        -exec cat {} + 2>/dev/null | sort -u || true
}
before=$(job_pids | tr '\n' ' ')
colony_procs=$(pgrep -f "colony (coordinator|node) .*:$colony_port" | tr '\n' ' ' || true)
[ -n "$colony_procs" ] || fail "no colony process found for port $colony_port"
for pid in $colony_procs; do
    grep -qw "$pid" <<<"$before" || fail "colony process $pid is not in job $job's cgroup"
done
scancel "$job"
for _ in $(seq 300); do
    alive=""
    for pid in $before; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -z "$alive" ] && ! squeue -h -j "$job" 2>/dev/null | grep -q . && break
    sleep 0.1
done
[ -z "$alive" ] || fail "processes of job $job still alive after scancel:$alive"
squeue -h -j "$job" 2>/dev/null | grep -q . && fail "job $job still in the queue"
job_left=$job
job=
step "scancel: job $job_left gone with its $(wc -w <<<"$before") processes (coordinator, node, srun, batch script)"

# Automatic allocation: a coordinator outside Slurm with --allocate slurm and no node of its
# own. A map makes it submit node jobs (at most 2); once idle the nodes are drained and their
# jobs end by themselves.
alloc_port=$(free_port)
metrics_port=$(free_port)
"$colony" coordinator --listen "tcp://127.0.0.1:$alloc_port" --state :memory: --metrics-listen "127.0.0.1:$metrics_port" \
    --allocate slurm --allocate-max 2 --allocate-idle 2 --allocate-args "--cpus-per-task=1 --output=$work/alloc-%j.out" \
    >"$work/alloc-coordinator.log" 2>&1 &
alloc_pid=$!
pids=("$alloc_pid" "${pids[@]}")
export COLONY_COORDINATOR=tcp://127.0.0.1:$alloc_port
metrics() {
    python3 -c 'import os, sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["COLONY_TOKEN"]})
print(urllib.request.urlopen(request).read().decode())' "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null || true
}
for _ in $(seq 100); do metrics | grep -q '^colony_allocations' && break; sleep 0.1; done
alloc_tasks=${SLURM_ALLOC_TASKS:-150}
alloc_times=120000
"$colony" counter set alloc 0 >/dev/null
for _ in $(seq 1 "$alloc_tasks"); do echo "{\"counter\":\"alloc\",\"times\":$alloc_times}"; done >"$work/alloc-inputs"
"$colony" map --handler count --inputs "$work/alloc-inputs" >"$work/alloc-out" 2>"$work/alloc-err" &
alloc_map=$!
most_running=0
while kill -0 "$alloc_map" 2>/dev/null; do
    running=$(metrics | awk '$1 == "colony_allocations{state=\"running\"}" { print int($2) }')
    [ "${running:-0}" -gt "$most_running" ] && most_running=$running
    sleep 0.2
done
wait "$alloc_map" || fail "colony map against the allocating coordinator failed: $(tail -n 3 "$work/alloc-err"; tail -n 5 "$work/alloc-coordinator.log")"
[ "$(grep -c "^$alloc_times\$" "$work/alloc-out")" -eq "$alloc_tasks" ] && [ "$(wc -l <"$work/alloc-out")" -eq "$alloc_tasks" ] \
    || fail "the allocated nodes' map printed $(wc -l <"$work/alloc-out") outputs for $alloc_tasks inputs"
alloc_counter=$("$colony" counter get alloc)
[ "$alloc_counter" -eq $((alloc_tasks * alloc_times)) ] || fail "counter alloc is $alloc_counter, expected $((alloc_tasks * alloc_times))"
submitted=$(grep -c 'allocation submitted' "$work/alloc-coordinator.log" || true)
[ "$submitted" -eq 2 ] || fail "$submitted allocations submitted (expected 2: the work keeps one node busy for seconds; --allocate-max 2)"
[ "$most_running" -ge 1 ] && [ "$most_running" -le 2 ] || fail "colony_allocations{state=\"running\"} went to $most_running (expected 1 or 2)"
step "allocation: map of $alloc_tasks tasks on $submitted node job(s) sbatch'ed by the coordinator (at most $most_running running at once), counter exact"
"$colony" status | grep -q "^allocations (slurm): [0-9]* requested, [0-9]* running, at most 2; $submitted submitted so far" \
    || fail "colony status does not show the allocations: $("$colony" status 2>&1 | head -n 3)"
for _ in $(seq 300); do
    [ -z "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] && break
    sleep 0.1
done
[ -z "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] || fail "allocated jobs still queued 30 s after the work ended: $(squeue -h --name=colony-node -o '%i %T' 2>&1)"
for _ in $(seq 50); do metrics | grep -q '^colony_allocations{state="running"} 0' && break; sleep 0.1; done
metrics | grep -q '^colony_allocations{state="running"} 0' || fail "colony_allocations{state=\"running\"} is not 0 after the jobs ended"
counted=$(metrics | awk '$1 == "colony_allocations_submitted_total" { print int($2) }')
[ "${counted:-}" = "$submitted" ] || fail "colony_allocations_submitted_total is ${counted:-absent}, not $submitted"
grep -q 'allocation idle, draining its node' "$work/alloc-coordinator.log" || fail "no allocated node was drained for idleness"
step "allocation: idle nodes drained, their jobs ended by themselves, metrics back to 0"
# A coordinator that stops cancels the jobs it submitted: none outlives it.
"$colony" map --handler count --inputs "$work/alloc-inputs" >/dev/null 2>&1 &
alloc_map=$!
for _ in $(seq 100); do [ -n "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] && break; sleep 0.1; done
[ -n "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] || fail "no job submitted for the second map"
kill -TERM "$alloc_pid"
wait "$alloc_pid" || fail "the allocating coordinator exited $? on SIGTERM"
kill "$alloc_map" 2>/dev/null || true
wait "$alloc_map" 2>/dev/null || true
for _ in $(seq 200); do [ -z "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] && break; sleep 0.1; done
[ -z "$(squeue -h --name=colony-node -o %i 2>/dev/null)" ] || fail "jobs left after the coordinator stopped: $(squeue -h --name=colony-node -o '%i %T' 2>&1)"
for _ in $(seq 100); do pgrep -f "colony node --coordinator tcp://127.0.0.1:$alloc_port" >/dev/null || break; sleep 0.1; done
pgrep -f "colony node --coordinator tcp://127.0.0.1:$alloc_port" >/dev/null && fail "allocated colony nodes left running"
step "allocation: the coordinator stopped (SIGTERM) and scancel'ed its running job"

stop_daemons
in_cgroups=$(find /sys/fs/cgroup/*/slurm_"$node" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ' || true)
[ -z "${in_cgroups// /}" ] || fail "processes left in slurm_$node cgroups: $in_cgroups"
remove_cgroups
left=$(pgrep -f "$work" | tr '\n' ' ' || true)
[ -z "$left" ] || fail "processes left behind: $left"
cgroups=$(ls -d /sys/fs/cgroup/*/slurm_"$node" 2>/dev/null || true)
[ -z "$cgroups" ] || fail "cgroup folders left behind: $cgroups"
rm -rf "$work"
[ ! -e "$work" ] || fail "$work left behind"
step "daemons stopped, cgroup folders and $work removed"
say "passed"
