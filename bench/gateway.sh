#!/bin/sh
# gateway.sh - the gateway part of `make bench` (alone: `make bench-gateway`).
# Usage: bench/gateway.sh [O] [VECTORS]
#
# On 127.0.0.1 only: $O/fake-upstream (no log, nothing recorded), in front
# of it $O/session-gateway (device tokens file, --log-level warn, default
# --threads) and nginx (Debian nginx-light, bench/nginx.conf.in: a plain
# reverse proxy, worker_processes auto, upstream keepalive), and, when the
# gateway has --spool, a second gateway in spool mode. wrk sends the same
# protobuf PATCH (the median-sized update of typical.jsonl, made with
# `session-codec encode`) to each, interleaved: ROUNDS rounds of
# gateway, nginx[, spool], SECONDS each, same threads and connections;
# medians of req/s and p50/p99 (wrk --latency). The gateway's RSS is
# sampled from /proc/PID/status during its runs.
# Then bytes on the wire per update (bench-wire computes them; session-codec
# send and curl measure them against the running gateway).
#
# Writes $O/bench/gateway.json (gateway.* and wire.* keys), merged into
# $O/bench/summary.json, and a section of $O/bench/report.md (replaced on
# each run). Every server is stopped by PID on exit. Tunables (env):
# GW_BENCH_SECONDS (5), GW_BENCH_ROUNDS (3), GW_BENCH_CONNECTIONS (32),
# GW_BENCH_THREADS (2), GW_BENCH_PERF (auto: a perf profile of the gateway
# when it misses 0.8x nginx; 0 never, 1 always), GW_BENCH_FLAGS (extra
# session-gateway flags, e.g. "--threads 2").
set -eu

O=${1:-build}
V=${2:-tests/vectors}
B=$O/bench
W=$B/gw
NX=$B/nginx
SECS=${GW_BENCH_SECONDS:-5}
ROUNDS=${GW_BENCH_ROUNDS:-3}
CONNS=${GW_BENCH_CONNECTIONS:-32}
THREADS=${GW_BENCH_THREADS:-2}
SRC=$V/typical.jsonl
# an org key as long as a real one (48 characters), and a device token
N_SESSIONS=1000
API_KEY=orq_bench_0123456789abcdef0123456789abcdef012345
TOKEN=dev-4f1c9a7e2b8d6035c1e9f4a7b2d80c63
start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
die() { echo "gateway.sh: $*" >&2; exit 1; }

for f in session-gateway fake-upstream session-codec bench-wire; do
	[ -x "$O/$f" ] || die "$O/$f missing (make O=$O all)"
done
[ -r "$SRC" ] || die "cannot read $SRC"
rm -rf "$W" "$NX"
mkdir -p "$W" "$NX/tmp"

# ==== Processes: started here, stopped by PID ====
up_pid= gw_pid= sp_pid= nx_pid= smp_pid= wrk_pid=
stop() {
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$1" 2>/dev/null || :
	wait "$1" 2>/dev/null || :
}
cleanup() {
	stop "$wrk_pid"; wrk_pid=
	stop "$smp_pid"; smp_pid=
	stop "$nx_pid"; nx_pid=   # nginx master: SIGTERM stops its workers
	stop "$sp_pid"; sp_pid=
	stop "$gw_pid"; gw_pid=
	stop "$up_pid"; up_pid=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (up to 10 s) for "listening on 127.0.0.1:PORT" in file $1; prints PORT.
port_of() {
	i=0
	while [ $i -lt 100 ]; do
		p=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$1" 2>/dev/null |
			head -n 1 | sed 's/.*://')
		[ -n "$p" ] && { echo "$p"; return 0; }
		kill -0 "$3" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	echo "gateway.sh: $2 did not start; its output:" >&2
	cat "$1" >&2
	return 1
}

say "servers (127.0.0.1)"
"$O/fake-upstream" --port 0 > "$W/upstream.out" 2>&1 &
up_pid=$!
up_port=$(port_of "$W/upstream.out" fake-upstream "$up_pid")
printf 'bench-device %s\n' "$TOKEN" > "$W/tokens"

# Starts a gateway (extra flags "$@") logging to $W/$1.log; sets gw_port.
start_gateway() {
	name=$1
	shift
	ORQ_API_KEY=$API_KEY "$O/session-gateway" --listen 127.0.0.1:0 \
		--upstream "http://127.0.0.1:$up_port" --device-tokens "$W/tokens" \
		--log-level warn "$@" 2> "$W/$name.log" &
	last_pid=$!
	last_port=$(port_of "$W/$name.log" "session-gateway ($name)" "$last_pid")
}
# shellcheck disable=SC2086 # GW_BENCH_FLAGS: extra gateway flags, split
start_gateway gateway ${GW_BENCH_FLAGS:-}
gw_pid=$last_pid gw_port=$last_port
echo "fake-upstream 127.0.0.1:$up_port (pid $up_pid), session-gateway 127.0.0.1:$gw_port (pid $gw_pid)"

# Spool mode, when the gateway has it: --spool DIR
sp_port=
if "$O/session-gateway" --help 2>&1 | grep -q -- '--spool'; then
	mkdir -p "$W/spool"
	if start_gateway spool --spool "$W/spool"; then
		sp_pid=$last_pid sp_port=$last_port
		echo "session-gateway --spool 127.0.0.1:$sp_port (pid $sp_pid)"
	else
		echo "spool mode did not start: skipped"
		stop "$last_pid"
	fi
else
	echo "session-gateway has no --spool yet: spool mode skipped"
fi

# nginx on a free port (it cannot report an ephemeral one): a few tries.
nx_port=
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || :)
if [ -n "$NGINX" ] && command -v wrk >/dev/null; then
	tries=0
	while [ -z "$nx_port" ] && [ $tries -lt 5 ]; do
		tries=$((tries + 1))
		p=$(awk -v s="$$$tries" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
		ss -Htln 2>/dev/null | grep -q ":$p " && continue
		sed -e "s|@DIR@|$(cd "$NX" && pwd)|g" -e "s|@PORT@|$p|g" \
			-e "s|@UPSTREAM_PORT@|$up_port|g" -e "s|@API_KEY@|$API_KEY|g" \
			-e "s|@USER@|$(id -un)|g" -e "s|@GROUP@|$(id -gn)|g" \
			-e "s|@WORKERS@|auto|g" bench/nginx.conf.in > "$NX/nginx.conf"
		"$NGINX" -p "$NX" -c "$(cd "$NX" && pwd)/nginx.conf" -e "$(cd "$NX" && pwd)/error.log" \
			> "$NX/stdout" 2>&1 &
		nx_pid=$!
		i=0
		while [ $i -lt 50 ] && kill -0 "$nx_pid" 2>/dev/null; do
			if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$p/healthz"; then
				nx_port=$p
				break
			fi
			sleep 0.1
			i=$((i + 1))
		done
		if [ -z "$nx_port" ]; then
			stop "$nx_pid"
			nx_pid=
		fi
	done
	if [ -n "$nx_port" ]; then
		echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') 127.0.0.1:$nx_port (master pid $nx_pid, worker_processes auto = $(nproc))"
	else
		echo "nginx did not start; see $NX/error.log: no comparison"
	fi
else
	echo "nginx or wrk not installed (make bench-deps): no load test"
fi

# ==== The request body: the median-sized update, as protobuf ====
sed -e 's/^{"sdk"://' -e 's/,"wire":".*$//' "$SRC" > "$W/sdk.jsonl"
"$O/session-codec" encode --lines --in "$W/sdk.jsonl" > "$W/pb.hex"
n_lines=$(wc -l < "$W/pb.hex")
pick=$(awk '{ print length($0) / 2, NR }' "$W/pb.hex" | sort -n -k1,1 -k2,2 |
	sed -n "$(( (n_lines + 1) / 2 ))p" | awk '{ print $2 }')
sed -n "${pick}p" "$W/sdk.jsonl" | "$O/session-codec" encode --out "$W/body.pb"
body_len=$(wc -c < "$W/body.pb")
sid=$(sed -n "${pick}{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$SRC")
json_len=$(sed -n "${pick}p" "$W/sdk.jsonl" | "$O/session-codec" canon | tr -d '\n' | wc -c)
# the bytes as Lua decimal escapes (wrk.body is a binary-safe Lua string)
lua_body=$(od -An -v -tu1 "$W/body.pb" | tr -s ' \n' '\n\n' |
	awk 'NF { printf "\\%d", $1 }')
cat > "$W/patch.lua" <<EOF
-- one protobuf PATCH, typical.jsonl line $pick ($body_len B; JSON $json_len B)
wrk.method = "PATCH"
wrk.path = "/v2/traces/sessions/$sid"
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Accept"] = "application/x-protobuf"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.body = "$lua_body"
-- $N_SESSIONS sessions in turn (the id's last 4 characters vary): spool mode
-- keeps each session's order, and real devices are many
local reqs, i = {}, 0
function init(args)
	for k = 0, $N_SESSIONS - 1 do
		reqs[k + 1] = wrk.format(nil, string.format("/v2/traces/sessions/%s%04d",
			"$(printf %s "$sid" | cut -c1-22)", k))
	end
end
function request()
	i = i % #reqs + 1
	return reqs[i]
end
EOF
echo "request: PATCH /v2/traces/sessions/<$N_SESSIONS ids like $sid>, protobuf body $body_len B (line $pick of typical.jsonl; its JSON: $json_len B)"
# the gateways must answer it 2xx before it is measured
for port in $gw_port $sp_port; do
	code=$(curl -s -o "$W/check.out" -w '%{http_code}' -X PATCH \
		-H 'Content-Type: application/x-protobuf' -H 'Accept: application/x-protobuf' \
		-H "Authorization: Bearer $TOKEN" --data-binary "@$W/body.pb" \
		"http://127.0.0.1:$port/v2/traces/sessions/$sid")
	case $code in 2??) ;; *) die "gateway on $port answers the bench request $code";; esac
done

# ==== Load: wrk, interleaved ====
# "key value" lines of a wrk --latency output: rps p50_ms p99_ms non2xx errors
wrk_parse() {
	awk '
	function ms(v) {
		if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
		if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
		if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
		return v + 0
	}
	/Requests\/sec:/ { rps = $2 }
	$1 == "50%" { p50 = ms($2) }
	$1 == "99%" { p99 = ms($2) }
	/Non-2xx or 3xx responses:/ { bad = $NF }
	/Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
	/ requests in / { n = $1 }
	END { printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, bad, err, n }' "$1"
}
# CPU time (clock ticks) of processes "$@": "user system"
cpu_ticks() {
	for p in "$@"; do
		awk '{ print $14, $15 }' "/proc/$p/stat" 2>/dev/null || :
	done | awk '{ u += $1; s += $2 } END { print u + 0, s + 0 }'
}
TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# CPU seconds of this shell's waited-for children (wrk): user + system
# (times runs in this shell; its output is read from a file: a command
# substitution would be a subshell with children of its own)
children_cpu() {
	times > "$W/times.txt"
	awk 'NR == 2 {
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%.3f\n", t }' "$W/times.txt"
}
# The machine's CPU ticks: "busy total" (busy: all but idle and iowait)
machine_ticks() {
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
# Samples VmRSS (KiB) of $1 every 0.2 s into $2 until killed.
sample_rss() {
	while kill -0 "$1" 2>/dev/null; do
		awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || :
		sleep 0.2
	done >> "$2"
}
# Waits (up to $2 tenths of a second) for the spool of the gateway on port
# $1 to be empty; prints the seconds it took, or "-1" when it did not drain.
spool_drain() {
	i=0
	while [ $i -lt "$2" ]; do
		depth=$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
			awk '$1 == "sessionwire_spool_depth" { print $2 }')
		[ "$depth" = 0 ] && { awk -v i=$i 'BEGIN { printf "%.1f", i / 10 }'; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	echo -1
}
# Runs wrk for $2 seconds against port $3; output in $W/$1.wrk
run_wrk() {
	wrk -t "$THREADS" -c "$CONNS" -d "${2}s" --timeout 10s --latency \
		-s "$W/patch.lua" "http://127.0.0.1:$3" > "$W/$1.wrk" 2>&1 ||
		die "wrk failed: $(cat "$W/$1.wrk")"
}

# median of column $2 of runs.txt rows of target $1
med() {
	awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$W/runs.txt" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
sum_col() { awk -v t="$1" -v c="$2" '$1 == t { s += $c } END { print s + 0 }' "$W/runs.txt"; }
kib_max() { sort -n "$1" | tail -n 1; }

have_load=
load_before=$(cut -d' ' -f1 /proc/loadavg)
if [ -n "$nx_port" ]; then
	have_load=1
	targets="gateway:$gw_port nginx:$nx_port"
	[ -n "$sp_port" ] && targets="$targets spool:$sp_port"
	say "load: wrk -t $THREADS -c $CONNS, $ROUNDS rounds x ($targets) x ${SECS} s, after a 1 s warm-up each"
	for t in $targets; do
		run_wrk "warmup-${t%%:*}" 1 "${t#*:}"
	done
	: > "$W/rss-gateway.kib"
	: > "$W/rss-spool.kib"
	r=1
	while [ "$r" -le "$ROUNDS" ]; do
		for t in $targets; do
			name=${t%%:*}
			smp_pid=
			case $name in
			gateway) sample_rss "$gw_pid" "$W/rss-gateway.kib" & smp_pid=$! ;;
			spool) sample_rss "$sp_pid" "$W/rss-spool.kib" & smp_pid=$! ;;
			esac
			case $name in
			gateway) pids=$gw_pid ;;
			spool) pids=$sp_pid ;;
			nginx) pids="$nx_pid $(pgrep -P "$nx_pid" | tr '\n' ' ')" ;;
			esac
			c0=$(cpu_ticks $pids); u0=$(cpu_ticks "$up_pid"); m0=$(machine_ticks); children_cpu > "$W/k0"
			run_wrk "$name-$r" "$SECS" "${t#*:}"
			c1=$(cpu_ticks $pids); u1=$(cpu_ticks "$up_pid"); m1=$(machine_ticks); children_cpu > "$W/k1"
			# % of all CPUs: the whole machine busy, and wrk + proxy +
			# upstream (below 100: they wait on each other, not on CPU)
			busy=$(echo "$m0 $m1 $c0 $c1 $u0 $u1 $(cat "$W/k0" "$W/k1" | tr "\n" " ")" | awk -v t="$TCK" '{
				all = $4 - $2 + ($4 == $2)
				own = ($7 + $8 - $5 - $6) + ($11 + $12 - $9 - $10) + ($14 - $13) * t
				printf "%.0f %.0f", 100 * ($3 - $1) / all, 100 * own / all }')
			stop "$smp_pid"; smp_pid=
			# CPU microseconds per request: proxy user, proxy system,
			# upstream (user + system)
			cpu=$(echo "$c0 $c1 $u0 $u1 $(wrk_parse "$W/$name-$r.wrk")" | awk -v t="$TCK" '{
				n = $14 > 0 ? $14 : 1; k = 1e6 / t / n
				printf "%.1f %.1f %.1f", ($3 - $1) * k, ($4 - $2) * k, ($7 + $8 - $5 - $6) * k }')
			set -- $(wrk_parse "$W/$name-$r.wrk") $cpu $busy
			printf '  round %d %-8s %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  non-2xx %s  socket errors %s  CPU us/req: user %s sys %s, upstream %s; CPUs busy %s%% (wrk+proxy+upstream %s%%)\n' \
				"$r" "$name" "$1" "$2" "$3" "$4" "$5" "$7" "$8" "$9" "${10}" "${11}"
			echo "$name $r $*" >> "$W/runs.txt"
			# the spool drains in the background: let it finish (up
			# to 15 s) before the next run, or it would load that one
			if [ "$name" = spool ]; then
				d=$(spool_drain "$sp_port" 150)
				echo "  round $r spool drained in ${d} s (upstream deliveries after the load)"
				echo "$r $d" >> "$W/spool-drain.txt"
			fi
		done
		r=$((r + 1))
	done
	# Where the gateway's CPU goes: perf (call graphs) during one more,
	# uncounted run, when it misses 0.8x nginx (GW_BENCH_PERF=0: never,
	# 1: always). Each sample goes to the first library or gateway
	# function above it (libcurl, libmicrohttpd, the codec call).
	ratio=$(awk -v a="$(med gateway 3)" -v b="$(med nginx 3)" 'BEGIN { print a / b }')
	want=${GW_BENCH_PERF:-auto}
	[ "$want" = auto ] && want=$(awk -v r="$ratio" 'BEGIN { print (r < 0.8) ? 1 : 0 }')
	if [ "$want" = 1 ] && command -v perf >/dev/null; then
		say "perf: where the gateway's CPU goes (3 s, not counted)"
		wrk -t "$THREADS" -c "$CONNS" -d 5s -s "$W/patch.lua" \
			"http://127.0.0.1:$gw_port" > "$W/perf.wrk" 2>&1 &
		wrk_pid=$!
		sleep 1
		perf record -q -F 499 --call-graph dwarf,16384 -p "$gw_pid" \
			-o "$W/perf.data" -- sleep 3 > "$W/perf.log" 2>&1 || :
		wait "$wrk_pid" || :
		perf script -i "$W/perf.data" -F comm,ip,sym,dso 2>/dev/null | awk '
		function flush(  i, j, leaf, own) {
			if (n == 0)
				return
			leaf = (d[1] ~ /kernel/) ? "kernel" : "user"
			own = "other (libc, threads)"
			for (i = 1; i <= n; i++) {
				if (d[i] ~ /libcurl/) { own = "libcurl (upstream request)"; break }
				if (d[i] ~ /libmicrohttpd/) { own = "libmicrohttpd (device side)"; break }
				if (d[i] ~ /session-gateway/) { own = "gateway: " s[i]; break }
			}
			if (own ~ /^gateway/)
				for (j = i; j <= n; j++)
					if (s[j] ~ /^(sw_json_parse|sw_json_write|sw_pb_encode|sw_pb_encode_ex|sw_pb_decode|sw_batch_decode|gw_log|gw_tokens_check|gw_metrics_[a-z_]*|gw_uplink_patch|gw_answer_pb)$/) {
						own = "gateway: " s[j]
						break
					}
			c[own "|" leaf]++
			tot++
			n = 0
		}
		/^[^\t]/ { flush(); next }
		/^\t/ { n++; s[n] = $2; d[n] = $NF }
		END {
			flush()
			for (k in c) {
				split(k, a, "|")
				printf "%.1f|%s|%s\n", 100 * c[k] / tot, a[1], a[2]
			}
		}' | sort -t'|' -k1,1 -rn | head -n 14 > "$W/perf.top"
		sed 's/^\([^|]*\)|\([^|]*\)|\(.*\)$/  \1%  \2 (\3)/' "$W/perf.top"
	fi
	hwm_gw=$(awk '/^VmHWM:/ { print $2 }' "/proc/$gw_pid/status")
	[ -n "$sp_pid" ] && hwm_sp=$(awk '/^VmHWM:/ { print $2 }' "/proc/$sp_pid/status")
	# threads: the event loops (--threads, one per CPU) and the rest
	thr_gw=$(awk '/^Threads:/ { print $2 }' "/proc/$gw_pid/status")
	[ -n "$sp_pid" ] && thr_sp=$(awk '/^Threads:/ { print $2 }' "/proc/$sp_pid/status")
	curl -s "http://127.0.0.1:$gw_port/metrics" > "$W/metrics.txt" || :
fi


# ==== Bytes on the wire ====
say "bytes on the wire per update (typical.jsonl)"
"$O/bench-wire" --vectors "$SRC" --host "127.0.0.1:$gw_port" --token "$TOKEN" \
	--key-len ${#API_KEY} --json "$W/wire.json" --out-dir "$W" | tee "$W/wire.txt"
# send: every update as its own PATCH, then batches of 10 of one session
gw="http://127.0.0.1:$gw_port"
: > "$W/send-patch.txt"
i=1
while [ $i -le "$n_lines" ]; do
	s=$(sed -n "${i}{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$SRC")
	sed -n "${i}p" "$W/sdk.jsonl" |
		"$O/session-codec" send --gateway "$gw" --token "$TOKEN" --session "$s" \
		> "$W/send.out" 2>&1 || die "send of line $i failed: $(cat "$W/send.out")"
	grep '^bytes on the wire' "$W/send.out" >> "$W/send-patch.txt"
	i=$((i + 1))
done
: > "$W/send-batch.txt"
: > "$W/curl-distinct.txt"
k=1
while [ $((k * 10)) -le "$n_lines" ]; do
	a=$(( (k - 1) * 10 + 1 ))
	s=$(sed -n "${a}{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$SRC")
	sed -n "${a},$((a + 9))p" "$W/sdk.jsonl" > "$W/batch.jsonl"
	"$O/session-codec" send --gateway "$gw" --token "$TOKEN" --session "$s" \
		--seq 1 --batch "$W/batch.jsonl" > "$W/send.out" 2>&1 ||
		die "send of batch $k failed: $(cat "$W/send.out")"
	grep '^bytes on the wire' "$W/send.out" >> "$W/send-batch.txt"
	# the same updates, 10 sessions: the Batch bench-wire wrote, sent by curl
	# with send's headers (no Accept, no User-Agent, no Expect)
	f=$W/distinct-$(printf %02d $k).pb
	curl -sS -o "$W/ack.pb" -w '%{http_code} %{size_request} %{size_upload}\n' \
		-H 'Content-Type: application/x-protobuf' -H 'Accept:' -H 'User-Agent:' \
		-H 'Expect:' -H "Authorization: Bearer $TOKEN" --data-binary "@$f" \
		"$gw/v1/updates" >> "$W/curl-distinct.txt"
	k=$((k + 1))
done
# total bytes per update from send's "... total = T" lines
per_update() { awk -v n="$2" '{ s += $NF } END { printf "%.1f", s / n }' "$1"; }
n_batched=$(( (n_lines / 10) * 10 ))
patch_meas=$(per_update "$W/send-patch.txt" "$n_lines")
batch_meas=$(per_update "$W/send-batch.txt" "$n_batched")
awk '$1 !~ /^2/ { bad++ } END { exit bad > 0 }' "$W/curl-distinct.txt" ||
	die "a batch of 10 sessions was not accepted: $(cat "$W/curl-distinct.txt")"
# curl's size_request: request line, headers and body
dist_meas=$(awk -v n="$n_batched" '{ s += $2 } END { printf "%.1f", s / n }' "$W/curl-distinct.txt")
wval() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$W/wire.json"; }
echo "measured: PATCH $patch_meas B (send), batch of 10 one session $batch_meas B (send)," \
	"10 sessions $dist_meas B (curl) per update"
for pair in "$patch_meas wire.patch_bytes_per_update_computed" \
	"$batch_meas wire.batch10_bytes_per_update_computed" \
	"$dist_meas wire.batch10_distinct_bytes_per_update_computed"; do
	set -- $pair
	[ "$1" = "$(wval "$2")" ] ||
		echo "WARNING: measured $1 B but bench-wire computes $(wval "$2") B ($2)"
done

# ==== gateway.json ====
J=$B/gateway.json
{
	echo "{"
	sed -e '1d' -e '$d' -e 's/,$//' "$W/wire.json" | grep -v '_computed"' | sed 's/$/,/'
	echo "  \"wire.patch_bytes_per_update\": $patch_meas,"
	echo "  \"wire.batch10_bytes_per_update\": $batch_meas,"
	echo "  \"wire.batch10_distinct_bytes_per_update\": $dist_meas,"
	if [ -n "$have_load" ]; then
		g_rps=$(med gateway 3); n_rps=$(med nginx 3)
		g_p50=$(med gateway 4); n_p50=$(med nginx 4)
		g_p99=$(med gateway 5); n_p99=$(med nginx 5)
		rss_max=$(kib_max "$W/rss-gateway.kib")
		echo "  \"gateway.rps\": $g_rps,"
		echo "  \"gateway.nginx_rps\": $n_rps,"
		awk -v a="$g_rps" -v b="$n_rps" 'BEGIN { printf "  \"gateway.rps_ratio_vs_nginx\": %.3f,\n", a / b }'
		echo "  \"gateway.p50_ms\": $g_p50,"
		echo "  \"gateway.nginx_p50_ms\": $n_p50,"
		echo "  \"gateway.p99_ms\": $g_p99,"
		echo "  \"gateway.nginx_p99_ms\": $n_p99,"
		awk -v a="$g_p99" -v b="$n_p99" 'BEGIN { printf "  \"gateway.p99_ratio_vs_nginx\": %.3f,\n", a / b }'
		awk -v a="$hwm_gw" -v b="$rss_max" 'BEGIN {
			printf "  \"gateway.rss_mib\": %.1f,\n", a / 1024
			printf "  \"gateway.rss_sampled_max_mib\": %.1f,\n", b / 1024 }'
		echo "  \"gateway.loops\": $(nproc),"
		echo "  \"gateway.threads\": $thr_gw,"
		[ -n "$sp_pid" ] && echo "  \"gateway.spool_threads\": $thr_sp,"
		for who in gateway nginx; do
			k=gateway.; [ $who = nginx ] && k=gateway.nginx_
			echo "  \"${k}cpu_user_us_per_request\": $(med $who 9),"
			echo "  \"${k}cpu_sys_us_per_request\": $(med $who 10),"
			awk -v k="$k" -v u="$(med $who 9)" -v s="$(med $who 10)" \
				'BEGIN { printf "  \"%scpu_us_per_request\": %.1f,\n", k, u + s }'
		done
		echo "  \"gateway.upstream_cpu_us_per_request\": $(med gateway 11),"
		echo "  \"gateway.nginx_upstream_cpu_us_per_request\": $(med nginx 11),"
		awk -v a="$(med gateway 9)" -v b="$(med gateway 10)" -v c="$(med nginx 9)" -v d="$(med nginx 10)" \
			'BEGIN { printf "  \"gateway.cpu_ratio_vs_nginx\": %.3f,\n", (a + b) / (c + d) }'
		echo "  \"gateway.machine_busy_pct\": $(med gateway 12),"
		echo "  \"gateway.nginx_machine_busy_pct\": $(med nginx 12),"
		echo "  \"gateway.bench_cpu_pct\": $(med gateway 13),"
		echo "  \"gateway.nginx_bench_cpu_pct\": $(med nginx 13),"
		echo "  \"gateway.loadavg_before\": $load_before,"
		echo "  \"gateway.non2xx\": $(sum_col gateway 6),"
		echo "  \"gateway.nginx_non2xx\": $(sum_col nginx 6),"
		if [ -n "$sp_port" ]; then
			s_rps=$(med spool 3)
			echo "  \"gateway.spool_rps\": $s_rps,"
			awk -v a="$s_rps" -v b="$n_rps" 'BEGIN { printf "  \"gateway.spool_rps_ratio_vs_nginx\": %.3f,\n", a / b }'
			awk -v a="$s_rps" -v b="$g_rps" 'BEGIN { printf "  \"gateway.spool_rps_ratio_vs_direct\": %.3f,\n", a / b }'
			echo "  \"gateway.spool_p99_ms\": $(med spool 5),"
			awk -v a="$hwm_sp" 'BEGIN { printf "  \"gateway.spool_rss_mib\": %.1f,\n", a / 1024 }'
			echo "  \"gateway.spool_non2xx\": $(sum_col spool 6),"
			echo "  \"gateway.spool_cpu_us_per_request\": $(awk -v u="$(med spool 9)" -v s="$(med spool 10)" 'BEGIN { printf "%.1f", u + s }'),"
			echo "  \"gateway.spool_drain_seconds\": $(sort -g -k2,2 "$W/spool-drain.txt" | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }'),"
		fi
		echo "  \"gateway.wrk_connections\": $CONNS,"
		echo "  \"gateway.wrk_threads\": $THREADS,"
		echo "  \"gateway.seconds_per_run\": $SECS,"
		echo "  \"gateway.rounds\": $ROUNDS,"
		echo "  \"gateway.request_body_bytes\": $body_len,"
	fi
	echo "  \"gateway.bench_seconds\": $(( $(date +%s) - start ))"
	echo "}"
} > "$J"

# ==== Merge into summary.json: its gateway.* and wire.* keys replaced ====
S=$B/summary.json
{
	[ -f "$S" ] && sed -e 's/,$//' "$S" | grep '^ *"' | grep -v '^ *"\(gateway\|wire\)\.'  || :
	sed -e 's/,$//' "$J" | grep '^ *"'
} | awk 'NR > 1 { print prev "," } { prev = $0 } END { print prev }' |
	{ echo "{"; cat; echo "}"; } > "$S.tmp"
mv "$S.tmp" "$S"

# ==== report.md: the section between the markers replaced ====
jv() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$J"; }
verdict() { awk "BEGIN { print ($1) ? \"met\" : \"MISSED\" }"; }
{
	echo "<!-- gateway:begin -->"
	echo "## Gateway under load"
	echo
	if [ -n "$have_load" ]; then
		echo "\`bench/gateway.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, everything on" \
			"this one machine over 127.0.0.1): wrk -t $THREADS -c $CONNS --latency," \
			"$ROUNDS rounds of $SECS s per server, interleaved (gateway, nginx$([ -n "$sp_port" ] && echo ", spool"))," \
			"medians. Each request: PATCH /v2/traces/sessions/<id> ($N_SESSIONS session ids in turn, like $sid), protobuf body" \
			"$body_len B (the median-sized update of typical.jsonl), Accept: application/x-protobuf," \
			"a device token. Behind both: \`fake-upstream\` (libmicrohttpd, a thread per" \
			"connection, 200 + a session JSON, nothing recorded)."
		echo "session-gateway: default \`--threads\` (one per CPU), \`--log-level warn\`, device tokens file;" \
			"it checks the token, decodes the protobuf, writes the SDK's JSON, PATCHes it" \
			"upstream on its event loop's curl multi handle (connections kept alive), and turns the JSON answer back into" \
			"protobuf. nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') (Debian nginx-light):" \
			"\`worker_processes auto\` ($(nproc)), no access log, upstream keepalive 64," \
			"forwards the bytes as they are (it does no translation)."
		echo
		echo "| server | req/s | p50 ms | p99 ms | peak RSS MiB | CPU us per request (user + sys) | upstream CPU us per request | non-2xx |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
		echo "| session-gateway | $(jv gateway.rps) | $(jv gateway.p50_ms) | $(jv gateway.p99_ms) | $(jv gateway.rss_mib) | $(jv gateway.cpu_us_per_request) ($(jv gateway.cpu_user_us_per_request) + $(jv gateway.cpu_sys_us_per_request)) | $(jv gateway.upstream_cpu_us_per_request) | $(jv gateway.non2xx) |"
		[ -n "$sp_port" ] &&
			echo "| session-gateway --spool | $(jv gateway.spool_rps) | $(med spool 4) | $(jv gateway.spool_p99_ms) | $(jv gateway.spool_rss_mib) | $(jv gateway.spool_cpu_us_per_request) ($(med spool 9) + $(med spool 10)) | (after the run) | $(jv gateway.spool_non2xx) |"
		echo "| nginx (reverse proxy) | $(jv gateway.nginx_rps) | $(jv gateway.nginx_p50_ms) | $(jv gateway.nginx_p99_ms) | | $(jv gateway.nginx_cpu_us_per_request) ($(jv gateway.nginx_cpu_user_us_per_request) + $(jv gateway.nginx_cpu_sys_us_per_request)) | $(jv gateway.nginx_upstream_cpu_us_per_request) | $(jv gateway.nginx_non2xx) |"
		echo
		echo "wrk, the proxy and the upstream share the same $(nproc) CPUs: req/s follows" \
			"the CPU each request costs (process utime + stime over the run / requests;" \
			"nginx: master and workers) while the machine is busy; it was" \
			"$(jv gateway.machine_busy_pct)% busy during the gateway's runs and" \
			"$(jv gateway.nginx_machine_busy_pct)% during nginx's (median; /proc/stat, all" \
			"processes; load average $load_before before the runs: other work on the" \
			"machine counts too), of which wrk + proxy + upstream used" \
			"$(jv gateway.bench_cpu_pct)% and $(jv gateway.nginx_bench_cpu_pct)% of all CPUs" \
			"(the rest went to other processes; while the CPUs are not all busy, wrk," \
			"proxy and upstream wait on each other rather than on the CPU)."
		echo "Every run: \`$W/runs.txt\` (target, round, req/s, p50, p99, non-2xx," \
			"socket errors, requests, proxy user and sys us per request, upstream us" \
			"per request, CPUs busy %, wrk + proxy + upstream %) and \`$W/*.wrk\`. RSS: VmHWM of the gateway after the load" \
			"(VmRSS sampled every 0.2 s during its runs: at most $(jv gateway.rss_sampled_max_mib) MiB)."
		if [ -s "$W/perf.top" ]; then
			echo
			echo "Where session-gateway's CPU goes (perf record --call-graph dwarf" \
				"during one more run; each sample counted for the first library or" \
				"gateway call above it, in the kernel or in user space; \`$W/perf.data\`):"
			echo
			echo "| share of samples | where | |"
			echo "| ---: | --- | --- |"
			sed 's/^\([^|]*\)|\([^|]*\)|\(.*\)$/| \1% | \2 | \3 |/' "$W/perf.top"
			echo
		fi
		[ -n "$sp_port" ] && echo "Spool mode (\`--spool DIR\`, DIR in \`$W/spool\`): the device" \
			"gets 202 once the update is committed to DIR/spool.db; forwarders deliver it" \
			"after. After each spool run the bench waits for the spool to drain (median" \
			"$(jv gateway.spool_drain_seconds) s; -1: not within 15 s) so that the next run is not loaded by it."
		[ -z "$sp_port" ] && echo "Spool mode: not measured (this session-gateway has no \`--spool\`)."
	else
		echo "Not measured: nginx or wrk is missing (\`make bench-deps\`)."
	fi
	echo
	echo "## Bytes on the wire per update (typical.jsonl, $(wval wire.updates) updates)"
	echo
	echo "Request line + headers + body. The SDK's request: \`PATCH /v2/traces/sessions/<id> HTTP/1.1\`," \
		"Host: my.orq.ai, Content-Type and Accept application/json, Authorization: Bearer" \
		"and a ${#API_KEY}-character key (assumed length), the TypeScript SDK's User-Agent" \
		"(\`speakeasy-sdk/typescript 4.2.9 2.799.0 2.0 @orq-ai/node\`), Content-Length, and the" \
		"canonical JSON body; Node's fetch adds connection, accept-language, sec-fetch-mode and" \
		"accept-encoding headers of its own (second figure). The device's requests as" \
		"\`session-codec send\` (libcurl) sends them to the gateway: Host: 127.0.0.1:$gw_port," \
		"a ${#TOKEN}-character device token, no User-Agent; measured by send (PATCH, one-session" \
		"batches) and curl (10-session batches), and equal to bench-wire's count."
	echo
	echo "| request | bytes per update | of which body |"
	echo "| --- | ---: | ---: |"
	echo "| SDK: JSON PATCH to the API | $(wval wire.sdk_json_http_bytes_per_update) ($(wval wire.sdk_json_http_node_fetch_bytes_per_update) with Node fetch's headers) | $(wval wire.sdk_json_body_bytes_per_update) |"
	echo "| device: protobuf PATCH to the gateway | $patch_meas | $(wval wire.patch_body_bytes_per_update) |"
	echo "| device: batch of 10, one session (POST /v1/updates) | $batch_meas | $(wval wire.batch10_body_bytes_per_update) |"
	echo "| device: batch of 10, 10 sessions | $dist_meas | $(wval wire.batch10_distinct_body_bytes_per_update) |"
	echo
	echo "### Targets (gateway)"
	echo
	echo "| target | measured | |"
	echo "| --- | --- | --- |"
	if [ -n "$have_load" ]; then
		echo "| direct PATCH req/s >= 1.0x nginx (floor 0.8x) | $(jv gateway.rps_ratio_vs_nginx)x | $(verdict "$(jv gateway.rps_ratio_vs_nginx) >= 1.0"), floor $(verdict "$(jv gateway.rps_ratio_vs_nginx) >= 0.8") |"
		echo "| p99 <= nginx's (floor 1.5x) | $(jv gateway.p99_ratio_vs_nginx)x ($(jv gateway.p99_ms) vs $(jv gateway.nginx_p99_ms) ms) | $(verdict "$(jv gateway.p99_ratio_vs_nginx) <= 1"), floor $(verdict "$(jv gateway.p99_ratio_vs_nginx) <= 1.5") |"
		echo "| CPU per request <= 1.2x nginx's | $(jv gateway.cpu_ratio_vs_nginx)x ($(jv gateway.cpu_us_per_request) vs $(jv gateway.nginx_cpu_us_per_request) us) | $(verdict "$(jv gateway.cpu_ratio_vs_nginx) <= 1.2") |"
		echo "| RSS under load <= 32 MiB | $(jv gateway.rss_mib) MiB | $(verdict "$(jv gateway.rss_mib) <= 32") |"
		[ -n "$sp_port" ] && echo "| spool mode >= 0.9x direct mode's req/s | $(jv gateway.spool_rps_ratio_vs_direct)x | $(verdict "$(jv gateway.spool_rps_ratio_vs_direct) >= 0.9") |"
		echo "| threads: the loops ($(jv gateway.loops)) + at most 1; spool mode + the writer | $(jv gateway.threads)$([ -n "$sp_port" ] && echo ", spool $(jv gateway.spool_threads)") | $(verdict "$(jv gateway.threads) <= $(jv gateway.loops) + 1")$([ -n "$sp_port" ] && echo ", $(verdict "$(jv gateway.spool_threads) <= $(jv gateway.loops) + 2")") |"
	fi
	echo "| batch of 10 <= 100 B per update | $batch_meas B (one session), $dist_meas B (10 sessions) | $(verdict "$batch_meas <= 100") (one session), $(verdict "$dist_meas <= 100") (10 sessions) |"
	echo "<!-- gateway:end -->"
} > "$B/gateway.md"
R=$B/report.md
if [ -f "$R" ] && grep -q '^<!-- gateway:begin -->' "$R"; then
	awk -v f="$B/gateway.md" '
	/^<!-- gateway:begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
	/^<!-- gateway:end -->/ { skip = 0; next }
	!skip' "$R" > "$R.tmp"
	mv "$R.tmp" "$R"
else
	{ [ -f "$R" ] && { cat "$R"; echo; }; cat "$B/gateway.md"; } > "$R.tmp"
	mv "$R.tmp" "$R"
fi

say "gateway report ($(( $(date +%s) - start )) s)"
sed -e '/^<!--/d' "$B/gateway.md"
