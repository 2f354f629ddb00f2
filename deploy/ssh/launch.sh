#!/usr/bin/env bash
# Starts a Colony cluster over ssh: the coordinator on the first host of HOSTFILE, a node on
# each of the others (like `dask ssh` or GNU parallel's --sshlogin).
#
#   launch.sh start HOSTFILE     start the coordinator, then the nodes
#   launch.sh status HOSTFILE    the coordinator's view (nodes, queue, counts)
#   launch.sh stop HOSTFILE      drain the nodes (SIGTERM), then stop the coordinator
#
# HOSTFILE: one host a line, `HOST [THREADS [PROCESSES]]`, `#` comments; the first host runs the
# coordinator (add it again on a later line to run a node there too).
# Environment: COLONY_PORT (7411), COLONY_BIN (remote path of colony; default `colony`),
# SSH (default `ssh`), COLONY_TOKEN (default: made once and kept in ~/.colony/token here).
# The token goes to each host's ~/.colony/token (mode 600) over ssh's stdin, never argv.
set -euo pipefail

ssh_cmd=${SSH:-ssh}
port=${COLONY_PORT:-7411}
bin=${COLONY_BIN:-colony}

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -eq 2 ] || usage
action=$1
hostfile=$2
[ -r "$hostfile" ] || { echo "launch.sh: cannot read $hostfile" >&2; exit 1; }

mapfile -t lines < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$hostfile")
[ ${#lines[@]} -ge 1 ] || { echo "launch.sh: $hostfile names no host" >&2; exit 1; }
read -r head _ <<<"${lines[0]}"
coordinator="tcp://$head:$port"

token() {
    if [ -n "${COLONY_TOKEN:-}" ]; then echo "$COLONY_TOKEN"; return; fi
    mkdir -p ~/.colony
    [ -s ~/.colony/token ] || (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >~/.colony/token)
    cat ~/.colony/token
}

# remote HOST SCRIPT: runs SCRIPT with bash on HOST.
remote() { "$ssh_cmd" "$1" "bash -c $(printf '%q' "$2")"; }

push_token() {
    token | "$ssh_cmd" "$1" 'umask 077 && mkdir -p ~/.colony && cat > ~/.colony/token'
}

case "$action" in
    start)
        push_token "$head"
        remote "$head" "nohup $bin coordinator --listen tcp://0.0.0.0:$port --state ~/.colony/state \
            --token-file ~/.colony/token >>~/.colony/coordinator.log 2>&1 </dev/null & echo \$! >~/.colony/coordinator.pid"
        echo "coordinator on $head ($coordinator)"
        for line in "${lines[@]:1}"; do
            read -r host threads processes _ <<<"$line"
            push_token "$host"
            remote "$host" "nohup $bin node --coordinator $coordinator --token-file ~/.colony/token \
                --name $host-\$\$ ${threads:+--threads $threads} ${processes:+--processes $processes} \
                >>~/.colony/node.log 2>&1 </dev/null & echo \$! >~/.colony/node.pid"
            echo "node on $host${threads:+ ($threads threads${processes:+, $processes processes})}"
        done
        ;;
    status)
        remote "$head" "$bin status --coordinator tcp://127.0.0.1:$port --token-file ~/.colony/token"
        ;;
    stop)
        for line in "${lines[@]:1}"; do
            read -r host _ <<<"$line"
            # SIGTERM drains: running tasks finish (or are handed back), then the node exits 0.
            remote "$host" 'pid=$(cat ~/.colony/node.pid 2>/dev/null) && kill -TERM "$pid" 2>/dev/null \
                && while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; rm -f ~/.colony/node.pid' || true
            echo "node on $host stopped"
        done
        remote "$head" 'pid=$(cat ~/.colony/coordinator.pid 2>/dev/null) && kill -TERM "$pid" 2>/dev/null \
            && while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; rm -f ~/.colony/coordinator.pid' || true
        echo "coordinator on $head stopped"
        ;;
    *) usage ;;
esac
