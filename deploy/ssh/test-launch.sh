#!/usr/bin/env bash
# Tests launch.sh without real machines: a fake `ssh` on PATH runs the remote command here,
# with HOME set to a folder per host, so each "host" has its own ~/.colony. Starts a
# coordinator (host "localhost") and two nodes, runs 200 tasks through them, stops everything,
# and checks that no process is left. Run by `make test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${COLONY:-$root/.build/debug/colony}
[ -x "$bin" ] || { echo "ssh launcher test: no colony binary at $bin (swift build first)" >&2; exit 1; }
work=$(mktemp -d /tmp/colony-ssh-test.XXXXXX)
trap 'COLONY_BIN="$bin" SSH="$work/bin/ssh" bash "$here/launch.sh" stop "$work/hosts" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cat >"$work/bin/ssh" <<SHIM
#!/usr/bin/env bash
# fake ssh: ssh HOST COMMAND... runs COMMAND here with HOME=$work/home/HOST
host=\$1; shift
mkdir -p "$work/home/\$host"
HOME="$work/home/\$host" exec bash -c "\$*"
SHIM
chmod +x "$work/bin/ssh"
port=$(( 20000 + RANDOM % 20000 ))
printf '# coordinator first\nlocalhost\nhost-a 2 0\nhost-b 1 1\n' >"$work/hosts"
export SSH="$work/bin/ssh" COLONY_BIN="$bin" COLONY_PORT=$port
unset COLONY_TOKEN
# The launching side's own ~/.colony (where launch.sh keeps the token it made) is in $work too.
export HOME="$work/home/launcher"

bash "$here/launch.sh" start "$work/hosts"
token=$(cat ~/.colony/token)
for _ in $(seq 100); do
    COLONY_TOKEN=$token "$bin" status --json --coordinator "tcp://127.0.0.1:$port" 2>/dev/null | grep -q '"host-b' && break
    sleep 0.1
done
bash "$here/launch.sh" status "$work/hosts" | grep -q "2 node(s)" || { echo "ssh launcher test: the nodes did not join" >&2; exit 1; }
out=$(seq 200 | COLONY_TOKEN=$token "$bin" map --handler echo --coordinator "tcp://127.0.0.1:$port" | wc -l)
[ "$out" -eq 200 ] || { echo "ssh launcher test: 200 inputs, $out outputs" >&2; exit 1; }
[ "$(stat -c %a "$work/home/host-a/.colony/token")" = 600 ] || { echo "ssh launcher test: token file not private" >&2; exit 1; }
bash "$here/launch.sh" stop "$work/hosts" >/dev/null
sleep 0.5
if pgrep -f "colony (coordinator|node) .*:$port" >/dev/null; then
    echo "ssh launcher test: processes left after stop" >&2; exit 1
fi
echo "ssh launcher: passed (coordinator + 2 nodes started through a fake ssh, 200 tasks, stopped cleanly)"
