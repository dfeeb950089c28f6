#!/bin/bash
# cluster.sh BUILD - the main job at scale, what `make run-cluster` shows:
# three nats-server nodes (one JetStream cluster, R3), two session-gateways
# with --queue on one stream, the stand-in API (fake-upstream) and a
# simulated fleet of devices (build/fleet) sending protobuf updates to
# both gateways in turn, resending what was not acknowledged. Midway the
# stream's leader node and then one gateway are killed with SIGKILL, and
# restarted. At the end it prints what was sent, acknowledged, delivered,
# duplicated and lost, and whether every session kept its order; exit 1
# when anything acknowledged was lost or a session went out of order.
# Everything runs on loopback ports found free; nothing is left behind.
# CLUSTER_SECONDS (30) of load, CLUSTER_SESSIONS (32) devices; CLUSTER_KEEP=1
# keeps the logs (printed where).
set -eu
build=${1:-build}
secs=${CLUSTER_SECONDS:-30}
sessions=${CLUSTER_SESSIONS:-32}
command -v nats-server >/dev/null ||
	{ echo "cluster.sh: needs nats-server (make deps installs it)" >&2; exit 2; }
for p in session-gateway fake-upstream fleet; do
	[ -x "$build/$p" ] || { echo "cluster.sh: $build/$p is not built" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sessionwire-cluster.XXXXXX")
declare -A pid
cleanup() {
	for k in "${!pid[@]}"; do kill -9 "${pid[$k]}" 2>/dev/null || true; done
	for k in 1 2 3; do [ -z "${nc_pid[$k]:-}" ] || kill -9 "${nc_pid[$k]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${CLUSTER_KEEP:-}" ]; then echo "cluster.sh: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

# Waits (up to 30 s, while process $3 lives) for "listening on
# 127.0.0.1:PORT" in a file; prints PORT.
port_of() {
	local i=0 p
	while [ $i -lt 300 ]; do
		p=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$1" 2>/dev/null | head -n 1 | sed 's/.*://')
		[ -n "$p" ] && { echo "$p"; return 0; }
		kill -0 "$3" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	echo "cluster.sh: $2 did not start; its output:" >&2
	tail -n 20 "$1" >&2
	return 1
}

say() { printf '[%5.1f s] %s\n' "$(awk "BEGIN { print $(date +%s.%N) - $t0 }")" "$*"; }
t0=$(date +%s.%N)

# ==== Three NATS nodes ====
. "$(dirname "$0")/nats_cluster.sh"
nc_start
urls=$nc_urls
say "3 nats-server nodes: $urls"

# ==== The stand-in API and two gateways ====
"$build/fake-upstream" --port 0 --log "$work/upstream.log" >"$work/upstream.out" 2>&1 &
pid[up]=$!
up=$(port_of "$work/upstream.out" fake-upstream "${pid[up]}")

gport[1]=$(free_port)
gport[2]=$(free_port)
start_gw() { # N: on its own port, the same after a restart
	ORQ_API_KEY=cluster-demo-key "$build/session-gateway" --listen "127.0.0.1:${gport[$1]}" \
		--upstream "http://127.0.0.1:$up" --allow-anonymous --threads 2 \
		--queue "$urls" --queue-stream FLEET --queue-partitions 32 \
		--upstream-timeout-ms 2000 --backoff-base-ms 10 --backoff-max-ms 500 \
		--log-level warn >"$work/gw$1.log" 2>&1 &
	pid[gw$1]=$!
}
# the first gateway creates the stream once JetStream has a leader
for try in $(seq 1 30); do
	start_gw 1
	if gw1=$(port_of "$work/gw1.log" session-gateway "${pid[gw1]}" 2>/dev/null); then break; fi
	kill -9 "${pid[gw1]}" 2>/dev/null || true
	wait "${pid[gw1]}" 2>/dev/null || true
	sleep 0.5
done
[ -n "${gw1:-}" ] || { echo "cluster.sh: the first gateway did not start" >&2; tail "$work/gw1.log" >&2; exit 1; }
start_gw 2
gw2=$(port_of "$work/gw2.log" session-gateway "${pid[gw2]}")
say "fake-upstream on :$up; gateways on :$gw1 and :$gw2 (stream FLEET, R3, 32 partitions)"

admin() { "$build/session-gateway" queue "$@" --queue "$urls" --queue-stream FLEET; }
leader() { admin stats 2>/dev/null | sed -n 's/.*"leader":"n\([0-9]\)".*/\1/p'; }

# ==== The fleet, and what dies midway ====
"$build/fleet" send --gateways "http://127.0.0.1:$gw1,http://127.0.0.1:$gw2" \
	--sessions "$sessions" --seconds "$secs" --out "$work/acked" &
pid[fleet]=$!
say "fleet: $sessions devices for $secs s, each update to the gateways in turn"

sleep $((secs / 3))
l=$(leader)
if [ -n "$l" ]; then
	say "kill -9 nats-server n$l (the stream's leader)"
	nc_kill "$l"
	sleep 5
	nc_node "$l"
	say "n$l restarted"
fi
sleep 3
say "kill -9 gateway 1"
kill -9 "${pid[gw1]}"; wait "${pid[gw1]}" 2>/dev/null || true
sleep 1
start_gw 1
gw1=$(port_of "$work/gw1.log" session-gateway "${pid[gw1]}")
say "gateway 1 restarted on :$gw1"

wait "${pid[fleet]}"
unset 'pid[fleet]'
say "fleet done; draining"
for i in $(seq 1 120); do
	d=$(admin stats 2>/dev/null | sed -n 's/^{"depth":\([0-9]*\),.*/\1/p')
	[ "$d" = 0 ] && break
	sleep 0.5
done
admin stats
for g in gw1 gw2; do
	kill -TERM "${pid[$g]}"; wait "${pid[$g]}" || echo "cluster.sh: $g did not exit 0" >&2
	unset "pid[$g]"
done
nc_stop
say "done"
echo
"$build/fleet" check --acked "$work/acked" --upstream "$work/upstream.log"
