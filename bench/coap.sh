#!/bin/sh
# coap.sh - the CoAP part of `make bench` and `make bench-gateway` (after
# bench/gateway.sh). Usage: bench/coap.sh [O] [VECTORS]
#
# On 127.0.0.1 only: $O/fake-upstream, and in front of it one
# $O/session-gateway with HTTP, --coap-listen (plain UDP, --coap-anonymous)
# and --coaps-listen (DTLS 1.2 PSK) at once, --log-level warn.
#
# 1. Bytes on the wire per update, counted from real packets: tcpdump on
#    lo captures each phase while `session-codec send` sends the 200
#    updates of typical.jsonl: as 200 protobuf PATCHes (HTTP/1.1, one
#    connection each), as 20 batches of 10 (POST /v1/updates), and over
#    CoAP as 200 confirmable POST /u (one connection), over DTLS (one
#    session: the handshake counted apart), and 20 POST /b of 10.
#    bench-coap pcap sums the payload of every datagram (UDP) or segment
#    (TCP) by direction: no IP, UDP or TCP headers, for any transport.
#    send's own counts are checked against the capture.
# 2. Updates per second: wrk (HTTP PATCH, -t THREADS -c CONNS) and
#    bench-coap load (CoAP and CoAPS: COAP_CONNS connections keeping
#    COAP_WINDOW confirmable requests each in flight, so the same number
#    in flight as wrk's connections), ROUNDS interleaved rounds of SECONDS,
#    the same median-sized update, medians. The gateway's CPU per update,
#    and the busiest thread's share (CoAP runs on one loop).
#
# Writes $O/bench/coap.json (wire.coap*, wire.http_* and coap.* keys),
# merged into summary.json, a section of report.md (replaced on each
# run) and $O/bench/coap-bytes.svg (gnuplot). Tunables (env):
# COAP_BENCH_SECONDS (5), COAP_BENCH_ROUNDS (3), COAP_BENCH_CONNS (4),
# COAP_BENCH_WINDOW (8), GW_BENCH_THREADS (2), GW_BENCH_CONNECTIONS (32).
set -eu

O=${1:-build}
V=${2:-tests/vectors}
B=$O/bench
W=$B/coap
SECS=${COAP_BENCH_SECONDS:-5}
ROUNDS=${COAP_BENCH_ROUNDS:-3}
CCONNS=${COAP_BENCH_CONNS:-4}
CWIN=${COAP_BENCH_WINDOW:-8}
THREADS=${GW_BENCH_THREADS:-2}
CONNS=${GW_BENCH_CONNECTIONS:-32}
SRC=$V/typical.jsonl
API_KEY=orq_bench_0123456789abcdef0123456789abcdef012345
TOKEN=dev-4f1c9a7e2b8d6035c1e9f4a7b2d80c63
PSK_ID=bench-psk
PSK=5d2b0c9e7a41f3862e19b7c4d0a85f63
start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
die() { echo "coap.sh: $*" >&2; exit 1; }

for f in session-gateway fake-upstream session-codec bench-coap; do
	[ -x "$O/$f" ] || die "$O/$f missing (make O=$O all)"
done
command -v tcpdump >/dev/null || die "tcpdump is not installed (make bench-deps)"
[ -r "$SRC" ] || die "cannot read $SRC"
rm -rf "$W"
mkdir -p "$W"

# ==== Processes: started here, stopped by PID ====
up_pid= gw_pid= td_pid= wrk_pid=
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
	stop "$td_pid"; td_pid=
	stop "$gw_pid"; gw_pid=
	stop "$up_pid"; up_pid=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (10 s) for "$2<number>" in file $1; prints the number.
port_of() {
	i=0
	while [ $i -lt 100 ]; do
		p=$(grep -o "$2[0-9]*" "$1" 2>/dev/null | head -n 1 | sed 's/.*://')
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	echo "coap.sh: no \"$2\" in $1:" >&2
	cat "$1" >&2
	return 1
}

say "servers (127.0.0.1)"
"$O/fake-upstream" --port 0 > "$W/upstream.out" 2>&1 &
up_pid=$!
up_port=$(port_of "$W/upstream.out" 'listening on 127\.0\.0\.1:')
printf 'bench-device %s\n%s psk:%s\n' "$TOKEN" "$PSK_ID" "$PSK" > "$W/tokens"
ORQ_API_KEY=$API_KEY "$O/session-gateway" --listen 127.0.0.1:0 \
	--upstream "http://127.0.0.1:$up_port" --device-tokens "$W/tokens" \
	--coap-listen 127.0.0.1:0 --coap-anonymous --coaps-listen 127.0.0.1:0 \
	--log-level warn 2> "$W/gateway.log" &
gw_pid=$!
http_port=$(port_of "$W/gateway.log" '"listening on 127\.0\.0\.1:')
coap_port=$(port_of "$W/gateway.log" 'coap listening on udp 127\.0\.0\.1:')
coaps_port=$(port_of "$W/gateway.log" 'coaps listening on udp 127\.0\.0\.1:')
echo "session-gateway (pid $gw_pid): HTTP $http_port, CoAP udp $coap_port, CoAP over DTLS udp $coaps_port; fake-upstream $up_port"

# The updates as JSON lines, a session id (a ULID: 16 bytes in an envelope)
sed -e 's/^{"sdk"://' -e 's/,"wire":".*$//' "$SRC" > "$W/sdk.jsonl"
n_lines=$(wc -l < "$W/sdk.jsonl")
sid=$(sed -n "1{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$SRC")

# ==== Bytes on the wire, from packets ====
# capture NAME FILTER: tcpdump in the background until stop_capture
capture() {
	# --immediate-mode: every packet to tcpdump at once (else the ones in
	# a half-full ring block are lost when it stops)
	tcpdump -i lo -n -s 0 -U --immediate-mode -w "$W/$1.pcap" "$2" \
		2> "$W/$1.tcpdump" &
	td_pid=$!
	i=0
	until grep -q 'listening on' "$W/$1.tcpdump" 2>/dev/null; do
		[ $i -lt 100 ] || die "tcpdump did not start: $(cat "$W/$1.tcpdump")"
		sleep 0.1
		i=$((i + 1))
	done
}
stop_capture() {
	sleep 1
	kill -INT "$td_pid" 2>/dev/null || :
	wait "$td_pid" 2>/dev/null || :
	td_pid=
}
# sum of send's "bytes on the wire: up = U, down = D" lines (no "in all")
send_sum() { awk '/^(seq [0-9]+: )?bytes on the wire: up/ { gsub(/,/, ""); u += $7; d += $10 } END { print u + d }' "$1"; }

say "bytes on the wire per update (typical.jsonl, $n_lines updates), from captured packets"
capture http-patch "tcp port $http_port"
i=1
while [ "$i" -le "$n_lines" ]; do
	sed -n "${i}p" "$W/sdk.jsonl" |
		"$O/session-codec" send --gateway "http://127.0.0.1:$http_port" \
		--token "$TOKEN" --session "$sid" > "$W/send.out" 2>&1 ||
		die "HTTP send of line $i failed: $(cat "$W/send.out")"
	i=$((i + 1))
done
stop_capture
capture http-batch "tcp port $http_port"
k=0
while [ $(( (k + 1) * 10 )) -le "$n_lines" ]; do
	sed -n "$((k * 10 + 1)),$((k * 10 + 10))p" "$W/sdk.jsonl" > "$W/batch.jsonl"
	"$O/session-codec" send --gateway "http://127.0.0.1:$http_port" --token "$TOKEN" \
		--session "$sid" --seq $((k * 10 + 1)) --batch "$W/batch.jsonl" > "$W/send.out" 2>&1 ||
		die "HTTP batch $k failed: $(cat "$W/send.out")"
	k=$((k + 1))
done
n_batched=$((k * 10))
stop_capture
capture coap "udp port $coap_port"
"$O/session-codec" send --coap "coap://127.0.0.1:$coap_port" --session "$sid" \
	--seq 1000 --lines < "$W/sdk.jsonl" > "$W/send-coap.txt" 2>&1 ||
	die "CoAP send failed: $(tail -5 "$W/send-coap.txt")"
stop_capture
capture coaps "udp port $coaps_port"
"$O/session-codec" send --coap "coaps://127.0.0.1:$coaps_port" --psk-identity "$PSK_ID" \
	--psk-key "$PSK" --session "$sid" --seq 2000 --lines < "$W/sdk.jsonl" \
	> "$W/send-coaps.txt" 2>&1 || die "CoAPS send failed: $(tail -5 "$W/send-coaps.txt")"
stop_capture
capture coap-batch "udp port $coap_port"
: > "$W/send-coap-batch.txt"
k=0
while [ $(( (k + 1) * 10 )) -le "$n_lines" ]; do
	sed -n "$((k * 10 + 1)),$((k * 10 + 10))p" "$W/sdk.jsonl" > "$W/batch.jsonl"
	"$O/session-codec" send --coap "coap://127.0.0.1:$coap_port" --session "$sid" \
		--seq $((3000 + k * 10)) --batch "$W/batch.jsonl" >> "$W/send-coap-batch.txt" 2>&1 ||
		die "CoAP batch $k failed: $(tail -5 "$W/send-coap-batch.txt")"
	k=$((k + 1))
done
stop_capture

J=$W/wire.json
: > "$J"
"$O/bench-coap" pcap "$W/http-patch.pcap" --tcp --port "$http_port" --updates "$n_lines" --json "$J" --key http_patch
"$O/bench-coap" pcap "$W/http-batch.pcap" --tcp --port "$http_port" --updates "$n_batched" --json "$J" --key http_batch10
"$O/bench-coap" pcap "$W/coap.pcap" --port "$coap_port" --updates "$n_lines" --json "$J" --key coap
"$O/bench-coap" pcap "$W/coaps.pcap" --port "$coaps_port" --updates "$n_lines" --json "$J" --key coaps
"$O/bench-coap" pcap "$W/coap-batch.pcap" --port "$coap_port" --updates "$n_batched" --json "$J" --key coap_batch10
jv() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$J"; }
# send's own counts against the capture (DTLS: the handshake apart)
hs_send=$(awk '/^DTLS handshake/ { print $(NF) }' "$W/send-coaps.txt")
for pair in "coap $(send_sum "$W/send-coap.txt")" "coaps $(send_sum "$W/send-coaps.txt")" \
	"coap_batch10 $(send_sum "$W/send-coap-batch.txt")"; do
	set -- $pair
	cap=$(jv "wire.$1_data_bytes")
	[ "$2" = "$cap" ] || echo "WARNING: $1: send counted $2 B, the capture $cap B"
done
[ "$hs_send" = "$(jv wire.coaps_handshake_bytes)" ] ||
	echo "WARNING: DTLS handshake: send counted $hs_send B, the capture $(jv wire.coaps_handshake_bytes) B"
cipher=$(sed -n 's/^DTLS handshake (\([^)]*\)).*/\1/p' "$W/send-coaps.txt")
retrans=$(cat "$W/send-coap.txt" "$W/send-coaps.txt" | grep -c 'retransmissions' || :)

# ==== Load: HTTP, CoAP, CoAPS, interleaved ====
# the median-sized update, as gateway.sh picks it
"$O/session-codec" encode --lines --in "$W/sdk.jsonl" > "$W/pb.hex"
pick=$(awk '{ print length($0) / 2, NR }' "$W/pb.hex" | sort -n -k1,1 -k2,2 |
	sed -n "$(( (n_lines + 1) / 2 ))p" | awk '{ print $2 }')
sed -n "${pick}p" "$W/sdk.jsonl" | "$O/session-codec" encode --out "$W/body.pb"
body_len=$(wc -c < "$W/body.pb")
lsid=$(sed -n "${pick}{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$SRC")
prefix=$(printf %s "$lsid" | cut -c1-22)
lua_body=$(od -An -v -tu1 "$W/body.pb" | tr -s ' \n' '\n\n' | awk 'NF { printf "\\%d", $1 }')
cat > "$W/patch.lua" <<EOF
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Accept"] = "application/x-protobuf"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.body = "$lua_body"
local reqs, i = {}, 0
function init(args)
	for k = 0, 999 do
		reqs[k + 1] = wrk.format(nil, string.format("/v2/traces/sessions/%s%04d", "$prefix", k))
	end
end
function request()
	i = i % #reqs + 1
	return reqs[i]
end
EOF
TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
gw_ticks() { awk '{ print $14 + $15 }' "/proc/$gw_pid/stat"; }
# "tid ticks" of every gateway thread
thread_ticks() {
	for t in /proc/"$gw_pid"/task/*; do
		echo "${t##*/} $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)"
	done
}
have_wrk=
command -v wrk >/dev/null && have_wrk=1
: > "$W/runs.txt"
run_one() { # name: one run; a line of runs.txt:
	# name round rps p50_ms p99_ms non2xx cpu_us_per_update busiest_thread_pct
	name=$1
	thread_ticks > "$W/t0"
	c0=$(gw_ticks)
	case $name in
	http)
		wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" --timeout 10s --latency \
			-s "$W/patch.lua" "http://127.0.0.1:$http_port" > "$W/$name-$r.out" 2>&1 ||
			die "wrk failed: $(cat "$W/$name-$r.out")"
		set -- $(awk '
		function ms(v) {
			if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
			if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
			if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
			return v + 0 }
		/Requests\/sec:/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { bad = $NF } / requests in / { n = $1 }
		END { printf "%s %.3f %.3f %d %d\n", rps, p50, p99, bad, n }' "$W/$name-$r.out")
		;;
	coap|coaps)
		if [ "$name" = coap ]; then
			url=coap://127.0.0.1:$coap_port
			set --
		else
			url=coaps://127.0.0.1:$coaps_port
			set -- --psk-identity "$PSK_ID" --psk-key "$PSK"
		fi
		"$O/bench-coap" load "$url" "$@" --pb "$W/body.pb" --sid "$prefix" \
			--conns "$CCONNS" --window "$CWIN" --seconds "$SECS" > "$W/$name-$r.out" 2>&1 ||
			die "bench-coap load failed: $(cat "$W/$name-$r.out")"
		set -- $(sed -e 's/[{},"]/ /g' -e 's/ :/:/g' "$W/$name-$r.out" | awk '{
			for (i = 1; i < NF; i++) v[$i] = $(i + 1)
			printf "%s %s %s %d %d\n", v["rps:"], v["p50_ms:"], v["p99_ms:"], v["non_204:"] + v["lost:"], v["requests:"] }')
		;;
	esac
	c1=$(gw_ticks)
	thread_ticks > "$W/t1"
	busiest=$(awk -v s="$SECS" -v t="$TCK" 'NR == FNR { a[$1] = $2; next }
		{ d = $2 - a[$1]; if (d > m) m = d } END { printf "%.0f", 100 * m / (s * t) }' "$W/t0" "$W/t1")
	cpu=$(awk -v a="$c0" -v b="$c1" -v n="$5" -v t="$TCK" 'BEGIN { printf "%.1f", (b - a) * 1e6 / t / (n > 0 ? n : 1) }')
	echo "$name $r $1 $2 $3 $4 $cpu $busiest" >> "$W/runs.txt"
	printf '  round %d %-6s %8.0f updates/s  p50 %6.3f ms  p99 %6.3f ms  failed %s  gateway CPU %s us/update, busiest thread %s%%\n' \
		"$r" "$name" "$1" "$2" "$3" "$4" "$cpu" "$busiest"
}
targets="coap coaps"
[ -n "$have_wrk" ] && targets="http coap coaps"
say "load: $ROUNDS rounds x ($targets) x $SECS s; wrk -t $THREADS -c $CONNS; bench-coap $CCONNS connections x $CWIN in flight; body $body_len B"
r=0
for t in $targets; do run_one "$t"; done # warm-up, not counted
: > "$W/runs.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	for t in $targets; do run_one "$t"; done
	r=$((r + 1))
done
med() {
	awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$W/runs.txt" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "null"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
sum_col() { awk -v t="$1" -v c="$2" '$1 == t { s += $c } END { print s + 0 }' "$W/runs.txt"; }

# ==== coap.json, merged into summary.json ====
C=$B/coap.json
{
	echo "{"
	sed 's/^/  /; s/^  *"/  "/' "$J"
	echo "  \"wire.coaps_cipher\": \"$cipher\","
	echo "  \"wire.coap_updates\": $n_lines,"
	for t in $targets; do
		k=coap.$t; [ "$t" = coap ] && k=coap.coap
		echo "  \"$k.rps\": $(med "$t" 3),"
		echo "  \"$k.p50_ms\": $(med "$t" 4),"
		echo "  \"$k.p99_ms\": $(med "$t" 5),"
		echo "  \"$k.failed\": $(sum_col "$t" 6),"
		echo "  \"$k.gateway_cpu_us_per_update\": $(med "$t" 7),"
		echo "  \"$k.busiest_thread_cpu_pct\": $(med "$t" 8),"
	done
	echo "  \"coap.seconds_per_run\": $SECS,"
	echo "  \"coap.rounds\": $ROUNDS,"
	echo "  \"coap.in_flight\": $((CCONNS * CWIN)),"
	echo "  \"coap.bench_seconds\": $(( $(date +%s) - start ))"
	echo "}"
} > "$C"
S=$B/summary.json
{
	[ -f "$S" ] && sed -e 's/,$//' "$S" | grep '^ *"' |
		grep -v '^ *"\(coap\.\|wire\.coap\|wire\.http_patch_\|wire\.http_batch10_\)' || :
	sed -e 's/,$//' "$C" | grep '^ *"'
} | awk 'NR > 1 { print prev "," } { prev = $0 } END { print prev }' |
	{ echo "{"; cat; echo "}"; } > "$S.tmp"
mv "$S.tmp" "$S"

# ==== The plot: bytes per update by transport ====
cat > "$W/bytes.dat" <<EOF
"HTTP PATCH" $(jv wire.http_patch_up_bytes_per_update) $(jv wire.http_patch_down_bytes_per_update)
"HTTP batch of 10" $(jv wire.http_batch10_up_bytes_per_update) $(jv wire.http_batch10_down_bytes_per_update)
"CoAP /u" $(jv wire.coap_up_bytes_per_update) $(jv wire.coap_down_bytes_per_update)
"CoAP+DTLS /u" $(jv wire.coaps_up_bytes_per_update) $(jv wire.coaps_down_bytes_per_update)
"CoAP /b of 10" $(jv wire.coap_batch10_up_bytes_per_update) $(jv wire.coap_batch10_down_bytes_per_update)
EOF
if command -v gnuplot >/dev/null; then
	gnuplot <<EOF
set terminal svg size 900,480 dynamic font 'sans,12' noenhanced
set output '$B/coap-bytes.svg'
set title 'Bytes on the wire per update (typical.jsonl, payload of the packets captured on lo)'
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.6
set ylabel 'bytes per update'
set yrange [0:*]
set grid ytics
set key top right
plot '$W/bytes.dat' using 2:xtic(1) title 'device to gateway', '' using 3 title 'gateway to device'
EOF
	echo "plot: $B/coap-bytes.svg"
fi

# ==== report.md: the section between the markers replaced ====
cv() { sed -n "s/^ *\"$1\": *\([^,]*\),*$/\1/p" "$C"; }
verdict() { awk "BEGIN { print ($1) ? \"met\" : \"MISSED\" }"; }
{
	echo "<!-- coap:begin -->"
	echo "## CoAP: bytes on the wire and updates per second"
	echo
	echo "\`bench/coap.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, 127.0.0.1): one" \
		"session-gateway with HTTP, \`--coap-listen\` and \`--coaps-listen\` in front of" \
		"\`fake-upstream\`. Bytes: the payload of every packet tcpdump captured on lo while" \
		"\`session-codec send\` sent the $n_lines updates of typical.jsonl (IP, UDP and TCP" \
		"headers not counted, for any transport; HTTP: one connection per PATCH, its answer" \
		"\`Accept: application/x-protobuf\`; CoAP: one connection, confirmable POST, a" \
		"1-byte token, no Content-Format, answers piggybacked; DTLS: cipher $cipher," \
		"one session for all $n_lines updates). $retrans messages needed a retransmission."
	echo
	echo "| transport | up | down | total per update |"
	echo "| --- | ---: | ---: | ---: |"
	for k in http_patch http_batch10 coap coaps coap_batch10; do
		case $k in
		http_patch) l="HTTP/1.1 protobuf PATCH" ;;
		http_batch10) l="HTTP/1.1 batch of 10, one session" ;;
		coap) l="CoAP POST /u (plain UDP)" ;;
		coaps) l="CoAP over DTLS 1.2 PSK, POST /u" ;;
		coap_batch10) l="CoAP POST /b, batch of 10" ;;
		esac
		echo "| $l | $(jv "wire.${k}_up_bytes_per_update") | $(jv "wire.${k}_down_bytes_per_update") | $(jv "wire.${k}_bytes_per_update") |"
	done
	echo
	echo "The DTLS handshake (cookie exchange, PSK) costs $(jv wire.coaps_handshake_bytes) B once per session." \
		"Plot: \`$B/coap-bytes.svg\`."
	echo
	echo "Updates per second, $ROUNDS interleaved rounds of $SECS s, medians; the same" \
		"$body_len-byte update (1000 sessions in turn); as many requests in flight for each" \
		"(wrk -t $THREADS -c $CONNS; bench-coap: $CCONNS connections x $CWIN confirmable messages)." \
		"HTTP runs on every loop (--threads, one per CPU); CoAP on one (see coap.c)."
	echo
	echo "| transport | updates/s | p50 ms | p99 ms | gateway CPU us per update | busiest gateway thread | failed |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	for t in $targets; do
		k=coap.$t
		echo "| $t | $(printf %.0f "$(cv "$k.rps")") | $(cv "$k.p50_ms") | $(cv "$k.p99_ms") | $(cv "$k.gateway_cpu_us_per_update") | $(cv "$k.busiest_thread_cpu_pct")% | $(cv "$k.failed") |"
	done
	echo
	echo "### Targets (CoAP)"
	echo
	echo "| target | measured | |"
	echo "| --- | --- | --- |"
	echo "| CoAP <= 110 B up, <= 10 B down per update | $(jv wire.coap_up_bytes_per_update) up, $(jv wire.coap_down_bytes_per_update) down | $(verdict "$(jv wire.coap_up_bytes_per_update) <= 110 && $(jv wire.coap_down_bytes_per_update) <= 10") |"
	echo "| CoAP over DTLS-PSK <= 140 B up, <= 40 B down | $(jv wire.coaps_up_bytes_per_update) up, $(jv wire.coaps_down_bytes_per_update) down (handshake $(jv wire.coaps_handshake_bytes) B apart) | $(verdict "$(jv wire.coaps_up_bytes_per_update) <= 140 && $(jv wire.coaps_down_bytes_per_update) <= 40") |"
	echo "<!-- coap:end -->"
} > "$B/coap.md"
R=$B/report.md
if [ -f "$R" ] && grep -q '^<!-- coap:begin -->' "$R"; then
	awk -v f="$B/coap.md" '
	/^<!-- coap:begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
	/^<!-- coap:end -->/ { skip = 0; next }
	!skip' "$R" > "$R.tmp"
	mv "$R.tmp" "$R"
else
	{ [ -f "$R" ] && { cat "$R"; echo; }; cat "$B/coap.md"; } > "$R.tmp"
	mv "$R.tmp" "$R"
fi

say "CoAP report ($(( $(date +%s) - start )) s)"
sed -e '/^<!--/d' "$B/coap.md"
