#!/bin/bash
# bench/ingress.sh BUILD_DIR - the HTTP ingress alone, no upstream: is
# libmicrohttpd (what the gateway uses) dearer per request than
# libh2o-evloop, and how far are both from nginx? (issue 11's spike,
# make bench-ingress). Three minimal single-thread servers answer
# PATCH /v2/traces/sessions/<id> (a 150-byte body) with a fixed 96-byte
# JSON 200, keep-alive:
#   mhd-sync    libmicrohttpd, external epoll, answered in the handler
#   mhd-async   the same, suspended and resumed before answering: the
#               gateway's path while its upstream call is out
#   h2o-sync    libh2o-evloop 2.2, answered in the handler
#   h2o-async   answered from a 0 ms timer: the async path
#   nginx       one worker, `return 200`
# ROUNDS interleaved rounds of SECONDS each (wrk -t1 -cCONNS); medians
# of requests/s, p99 and the server's CPU per request (utime+stime from
# /proc); the CPU column is the one to read on a shared machine.
# Tunables (env): IB_SECONDS (8), IB_ROUNDS (3), IB_CONNECTIONS (32).
set -eu
build=${1:-build}
SECS=${IB_SECONDS:-8}
ROUNDS=${IB_ROUNDS:-3}
CONNS=${IB_CONNECTIONS:-32}
here=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "bench/ingress.sh: needs wrk (make bench-deps)" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "bench/ingress.sh: needs nginx (make bench-deps)" >&2; exit 1; }
pkg-config --exists libh2o-evloop || { echo "bench/ingress.sh: needs libh2o-evloop-dev (make bench-deps)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

out=$build/bench/ingress
mkdir -p "$out"
work=$(mktemp -d /tmp/sw-bench-ingress-XXXXXX)
declare -A pid port
cleanup() {
	for k in "${!pid[@]}"; do kill "${pid[$k]}" 2>/dev/null || true; done
	[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

flags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter"
cc $flags -o "$out/mhd_srv" "$here/ingress/mhd_srv.c" -lmicrohttpd
# h2o 2.2's headers are not -Wextra clean
cc $flags -Wno-sign-compare -Wno-missing-field-initializers \
	-o "$out/h2o_srv" "$here/ingress/h2o_srv.c" \
	$(pkg-config --cflags --libs libh2o-evloop)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
start() { # name program mode
	port[$1]=$(free_port)
	"$out/$2" "${port[$1]}" "$3" 2>"$work/$1.log" &
	pid[$1]=$!
}
start mhd-sync mhd_srv sync
start mhd-async mhd_srv async
start h2o-sync h2o_srv sync
start h2o-async h2o_srv async
port[nginx]=$(free_port)
mkdir -p "$work/tmp"
cat >"$work/nginx.conf" <<NGX
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/tmp;
    keepalive_requests 1000000;
    default_type application/json;
    server {
        listen 127.0.0.1:${port[nginx]};
        location / { return 200 '{"status":"accepted","session":"s-0123456789abcdef","seq":1,"stored":true,"pad":"xxxxxxxxxxxxx"}'; }
    }
}
NGX
"$NGINX" -c "$work/nginx.conf" -p "$work/" 2>"$work/nginx.log"
sleep 0.5
pid[nginx]=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
for k in mhd-sync mhd-async h2o-sync h2o-async nginx; do
	curl -sf -X PATCH --data-binary 'x' -o /dev/null \
		"http://127.0.0.1:${port[$k]}/v2/traces/sessions/s-1" ||
		{ echo "bench/ingress.sh: $k does not answer (see $work/$k.log)" >&2; exit 1; }
done

tck=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "bench/ingress.sh: $ROUNDS rounds of $SECS s, wrk -t1 -c$CONNS, interleaved; $(nproc) CPUs shared by everything"
: >"$work/rows"
for r in $(seq "$ROUNDS"); do
	for k in mhd-sync mhd-async h2o-sync h2o-async nginx; do
		t0=$(ticks "${pid[$k]}")
		res=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$here/ingress/patch.lua" \
			"http://127.0.0.1:${port[$k]}/" | grep '^RESULT')
		t1=$(ticks "${pid[$k]}")
		set -- $res
		n=${2#reqs=}; rps=${3#rps=}; p99=${4#p99_us=}; bad=${5#bad=}
		cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v t="$tck" 'BEGIN { printf "%.2f", (b - a) / t * 1e6 / n }')
		echo "$k $rps $p99 $cpu $bad" >>"$work/rows"
		printf '  round %d %-10s %8s req/s  p99 %6s us  %6s us CPU/request  %s bad\n' "$r" "$k" "$rps" "$p99" "$cpu" "$bad"
	done
done
echo
printf '%-10s %10s %10s %14s\n' server "req/s" "p99 us" "CPU us/req"
for k in mhd-sync mhd-async h2o-sync h2o-async nginx; do
	awk -v k="$k" '$1 == k { r[n] = $2; p[n] = $3; c[n] = $4; n++ }
		function med(a, n,   i, j, t) { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } return a[int(n / 2)] }
		END { printf "%-10s %10d %10d %14.2f\n", k, med(r, n), med(p, n), med(c, n) }' "$work/rows"
done | tee "$out/table.txt"
awk '$1 == "mhd-async" { m = $4 } $1 == "h2o-async" { h = $4 } END { printf "mhd-async - h2o-async: %.2f us CPU per request\n", m - h }' "$out/table.txt"
