#!/bin/sh
# bench/spool.sh BUILD_DIR [SECONDS] [CONNECTIONS]
#
# Spool mode against direct mode, in the same run, on loopback: one
# fake-upstream, two session-gateways in front of it (one plain, one with
# --spool in a temporary directory), wrk PATCHing JSON updates of 1000
# sessions at each in turn. Prints requests per second of both, their
# ratio, and for the spool the commits (WAL fsyncs) per stored update,
# taken from /metrics.
#
# Needs wrk (make bench-deps installs it).
set -eu
build=${1:-build}
secs=${2:-5}
conns=${3:-32}
threads=${4:-8}
forwarders=${5:-16}
command -v wrk >/dev/null || { echo "bench/spool.sh: needs wrk" >&2; exit 1; }
work=$(mktemp -d /tmp/sw-bench-spool-XXXXXX)
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

port_of() { # file name
	i=0
	while [ $i -lt 200 ]; do
		p=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -n 1)
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.05
		i=$((i + 1))
	done
	echo "bench/spool.sh: $2 did not start:" >&2
	cat "$1" >&2
	return 1
}

"$build/fake-upstream" --port 0 > "$work/up.out" 2>&1 < /dev/null &
pids="$pids $!"
up=$(port_of "$work/up.out" fake-upstream)

start_gw() { # name extra-args...
	name=$1
	shift
	ORQ_API_KEY=bench-key "$build/session-gateway" --listen 127.0.0.1:0 \
		--upstream "http://127.0.0.1:$up" --allow-anonymous \
		--log-level error --max-concurrent 4096 --threads "$threads" "$@" \
		> /dev/null 2> "$work/$name.log" &
	pids="$pids $!"
}
start_gw direct
start_gw spool --spool "$work/spool" --spool-forwarders "$forwarders"
direct=$(port_of "$work/direct.log" direct)
spool=$(port_of "$work/spool.log" spool)

cat > "$work/patch.lua" <<'EOF'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
	n = n + 1
	local body = string.format('{"traces_count":%d,"tags":["bench","t%d"],"duration":%d}', n, n % 7, n)
	return wrk.format(nil, "/v2/traces/sessions/bench-" .. (n % 1000), nil, body)
end
EOF

run() { # port
	wrk -t2 -c"$conns" -d"${secs}s" -s "$work/patch.lua" "http://127.0.0.1:$1" |
		awk '/Requests\/sec/ { print $2 } / Non-2xx/ { bad = $NF } END { if (bad) print "non-2xx " bad > "/dev/stderr" }'
}
metric() { # port name
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

echo "bench/spool.sh: ${secs} s per mode, $conns connections, 1000 sessions, $(nproc) CPUs"
d=$(run "$direct")
s=$(run "$spool")
commits=$(metric "$spool" sessionwire_spool_commits_total)
stored=$(metric "$spool" sessionwire_spool_stored_total)
rows=$(metric "$spool" sessionwire_spool_commit_rows_total)
csum=$(metric "$spool" sessionwire_spool_commit_duration_seconds_sum)
depth=$(metric "$spool" sessionwire_spool_depth)
delivered=$(metric "$spool" sessionwire_spool_delivered_total)
echo "direct: $d requests/s"
echo "spool:  $s requests/s (202 after COMMIT); at the end $delivered delivered, $depth still waiting"
awk -v d="$d" -v s="$s" -v c="$commits" -v u="$stored" -v r="$rows" -v cs="$csum" 'BEGIN {
	printf "spool/direct: %.2f\n", s / d
	printf "spool commits: %d for %d stored updates and %d rows (marks included): %.3f fsyncs per update, mean commit %.2f ms\n", c, u, r, c / u, 1000 * cs / c
}'
