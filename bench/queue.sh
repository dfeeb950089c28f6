#!/bin/bash
# bench/queue.sh BUILD_DIR - issue 13's targets for --queue (make
# bench-queue), on loopback, this machine only: a 3-node nats-server
# cluster (R3), the stand-in API (fake-upstream), wrk PATCHing JSON updates
# of 1000 sessions with Prefer: respond-async (202 once stored), every
# process on the same cores.
#
#   accept   ROUNDS rounds of SECONDS each against three gateways:
#            direct mode and --queue-accept-only (storing only: the publish
#            path's capacity) interleaved, then --queue (forwarding what it
#            stores at the same time, on the same cores: its backlog keeps
#            it busy, so its rounds come last). Medians of updates/s, p50
#            and p99 (wrk --latency); queue/direct ratios.
#   drain    the backlog the accept-only gateway left, forwarded by a
#            gateway in front of the stand-in API with nothing new coming:
#            updates/s to the upstream, for PARTITIONS (64) and the other
#            counts of DRAIN_PARTITIONS (a backlog of BACKLOG stored first,
#            each on a stream of its own): one update at a time per
#            partition (MaxAckPending 1) is what the partition count buys.
#
# Tunables (env): QB_SECONDS (5), QB_ROUNDS (3), QB_CONNECTIONS (32),
# QB_THREADS (2 loops per gateway), QB_PARTITIONS (64), QB_DRAIN_PARTITIONS
# ("8 256"), QB_BACKLOG (20000), QB_KEEP (keep the logs). Every process is
# stopped by PID.
set -eu
build=${1:-build}
SECS=${QB_SECONDS:-5}
ROUNDS=${QB_ROUNDS:-3}
CONNS=${QB_CONNECTIONS:-32}
THREADS=${QB_THREADS:-2}
PARTS=${QB_PARTITIONS:-64}
DRAIN_PARTS=${QB_DRAIN_PARTITIONS-8 256}
BACKLOG=${QB_BACKLOG:-20000}
command -v wrk >/dev/null || { echo "bench/queue.sh: needs wrk (make bench-deps)" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "bench/queue.sh: needs nats-server (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/sw-bench-queue-XXXXXX)
declare -A pid
cleanup() {
	for k in "${!pid[@]}"; do kill "${pid[$k]}" 2>/dev/null || true; done
	for k in 1 2 3; do [ -z "${nc_pid[$k]:-}" ] || kill "${nc_pid[$k]}" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${QB_KEEP:-}" ]; then echo "bench/queue.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/../tests/nats_cluster.sh"

port_of() { # file name pid
	local i=0 p
	while [ $i -lt 600 ]; do
		p=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -n 1)
		[ -n "$p" ] && { echo "$p"; return 0; }
		kill -0 "$3" 2>/dev/null || break
		sleep 0.05
		i=$((i + 1))
	done
	echo "bench/queue.sh: $2 did not start:" >&2
	tail "$1" >&2
	return 1
}
metric() { # port name
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
stop() { # name
	kill "${pid[$1]}" 2>/dev/null || true
	wait "${pid[$1]}" 2>/dev/null || true
	unset "pid[$1]"
}

nc_start
"$build/fake-upstream" --port 0 >"$work/up.out" 2>&1 </dev/null &
pid[up]=$!
up=$(port_of "$work/up.out" fake-upstream "${pid[up]}")

start_gw() { # name extra-args...
	local name=$1
	shift
	ORQ_API_KEY=bench-key "$build/session-gateway" --listen 127.0.0.1:0 \
		--upstream "http://127.0.0.1:$up" --allow-anonymous \
		--log-level error --max-concurrent 4096 --threads "$THREADS" "$@" \
		>/dev/null 2>"$work/$name.log" &
	pid[$name]=$!
}
# A queue gateway (name stream partitions [flags...]), its port in $port;
# retried until the fresh cluster has a leader and its peers.
start_queue_gw() {
	local try name=$1 stream=$2 parts=$3
	shift 3
	for try in $(seq 1 60); do
		start_gw "$name" --queue "$nc_urls" --queue-stream "$stream" \
			--queue-partitions "$parts" "$@"
		if port=$(port_of "$work/$name.log" "$name" "${pid[$name]}" 2>/dev/null); then
			return 0
		fi
		wait "${pid[$name]}" 2>/dev/null || true
		sleep 0.5
	done
	tail "$work/$name.log" >&2
	return 1
}
start_gw direct
direct=$(port_of "$work/direct.log" direct "${pid[direct]}")
start_queue_gw queue BENCH "$PARTS"
queue=$port
start_queue_gw accept BENCHA "$PARTS" --queue-accept-only
accept=$port

cat >"$work/patch.lua" <<'LUA'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "respond-async"
local n = 0
request = function()
	n = n + 1
	local body = string.format('{"traces_count":%d,"tags":["bench","t%d"],"duration":%d}', n, n % 7, n)
	return wrk.format(nil, "/v2/traces/sessions/bench-" .. (n % 1000), nil, body)
end
LUA

# "rps p50_ms p99_ms non2xx" of one wrk run
run() { # port seconds
	wrk -t2 -c"$CONNS" -d"${2:-$SECS}s" --latency -s "$work/patch.lua" "http://127.0.0.1:$1" |
		awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { bad = $NF } END { printf "%s %.2f %.2f %d\n", rps, p50, p99, bad }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
stats() { "$build/session-gateway" queue stats --queue "$nc_urls" --queue-stream "$1"; }
depth() { stats "$1" | sed -n 's/^{"depth":\([0-9]*\),.*/\1/p'; }

echo "bench/queue.sh: $ROUNDS rounds of ${SECS} s, wrk -t2 -c$CONNS, 1000 sessions, --threads $THREADS, $(nproc) CPUs shared by everything; 3 nats-server nodes, R3, $PARTS partitions"
for m in direct queue accept; do : >"$work/$m.runs"; done
# direct and accept-only interleaved; then the forwarding gateway's rounds
# (its backlog keeps it busy between them, so they come last)
for r in $(seq 1 "$ROUNDS"); do
	run "$direct" >>"$work/direct.runs"
	run "$accept" >>"$work/accept.runs"
done
for r in $(seq 1 "$ROUNDS"); do
	run "$queue" >>"$work/queue.runs"
done
for m in direct queue accept; do
	rps=$(awk '{ print $1 }' "$work/$m.runs" | median)
	p50=$(awk '{ print $2 }' "$work/$m.runs" | median)
	p99=$(awk '{ print $3 }' "$work/$m.runs" | median)
	bad=$(awk '{ s += $4 } END { print s + 0 }' "$work/$m.runs")
	case $m in
	direct) label="direct" ;;
	queue) label="--queue (forwarding too)" ;;
	accept) label="--queue-accept-only" ;;
	esac
	printf '%-26s %7.0f updates/s accepted  p50 %6.2f ms  p99 %7.2f ms  non-2xx %d\n' \
		"$label" "$rps" "$p50" "$p99" "$bad"
	eval "${m}_rps=$rps"
done
awk -v d="$direct_rps" -v q="$queue_rps" -v a="$accept_rps" 'BEGIN {
	printf "queue/direct: %.2f forwarding too, %.2f accept-only (target >= 0.5)\n", q / d, a / d }'
ack_ms=$(curl -s "http://127.0.0.1:$accept/metrics" |
	awk '/^sessionwire_queue_publish_duration_seconds_(sum|count)/ { v[$1] = $2 }
	END { printf "%.2f", 1000 * v["sessionwire_queue_publish_duration_seconds_sum"] / v["sessionwire_queue_publish_duration_seconds_count"] }')
echo "publish to ack (JetStream), accept-only gateway: mean $ack_ms ms"
# queue.* keys for summary.json (merged at the end)
J=$build/bench/queue.json
mkdir -p "$build/bench"
{
	echo "  \"queue.direct_rps\": $direct_rps,"
	echo "  \"queue.accept_only_rps\": $accept_rps,"
	echo "  \"queue.forwarding_rps\": $queue_rps,"
	awk -v d="$direct_rps" -v q="$queue_rps" -v a="$accept_rps" 'BEGIN {
		printf "  \"queue.accept_only_ratio_vs_direct\": %.3f,\n", a / d
		printf "  \"queue.forwarding_ratio_vs_direct\": %.3f,\n", q / d }'
	echo "  \"queue.accept_only_p99_ms\": $(awk '{ print $3 }' "$work/accept.runs" | median),"
	echo "  \"queue.publish_ack_mean_ms\": $ack_ms,"
	echo "  \"queue.connections\": $CONNS,"
} > "$J"
stop direct
stop queue
stop accept

# ==== Drain: a backlog, nothing new coming ====
drain() { # stream partitions
	local n t0 t1 d d0
	start_queue_gw "drain$2" "$1" "$2"
	d0=$(metric "$port" sessionwire_queue_delivered_total)
	t0=$(date +%s.%N)
	n=$(depth "$1")
	while [ "$(depth "$1")" != 0 ]; do sleep 0.2; done
	t1=$(date +%s.%N)
	d=$(metric "$port" sessionwire_queue_delivered_total)
	awk -v n="$n" -v d="$d" -v d0="$d0" -v t0="$t0" -v t1="$t1" -v p="$2" 'BEGIN {
		printf "drain, %3d partitions: %6d waiting, %6.0f updates/s to the upstream (%.1f s)\n", p, n + d0, (d - d0) / (t1 - t0), t1 - t0 }'
	awk -v d="$d" -v d0="$d0" -v t0="$t0" -v t1="$t1" -v p="$2" 'BEGIN {
		printf "  \"queue.drain_rps_%d_partitions\": %.0f,\n", p, (d - d0) / (t1 - t0) }' >> "$build/bench/queue.json"
	stop "drain$2"
}
drain BENCHA "$PARTS"
cat >"$work/fill.lua" <<'LUA'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "respond-async"
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, "/v2/traces/sessions/drain-" .. (n % 1000), nil,
		string.format('{"traces_count":%d}', n))
end
LUA
for p in $DRAIN_PARTS; do
	start_queue_gw fill "DRAIN$p" "$p" --queue-accept-only
	while [ "$(depth "DRAIN$p")" -lt "$BACKLOG" ]; do
		wrk -t2 -c"$CONNS" -d2s -s "$work/fill.lua" "http://127.0.0.1:$port" >/dev/null
	done
	stop fill
	drain "DRAIN$p" "$p"
done

# ==== Merge into summary.json: its queue.* keys replaced ====
S=$build/bench/summary.json
{
	[ -f "$S" ] && sed -e 's/,$//' "$S" | grep '^ *"' | grep -v '^ *"queue\.' || :
	sed -e 's/,$//' "$build/bench/queue.json" | grep '^ *"'
} | awk 'NR > 1 { print prev "," } { prev = $0 } END { print prev }' |
	{ echo "{"; cat; echo "}"; } > "$S.tmp"
mv "$S.tmp" "$S"
echo "queue.* keys merged into $S"
