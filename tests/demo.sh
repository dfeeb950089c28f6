#!/bin/sh
# demo.sh BUILD VECTORS - the main job on loopback, what `make run` shows:
# a stand-in orq.ai API (fake-upstream), session-gateway in front of it, and
# a simulated device sending realistic updates with `session-codec send`:
# one PATCH, then a batch of 10. Prints what the device sent, what went
# upstream, and the bytes saved; stops everything it started.
set -eu
build=${1:-build}
vectors=${2:-tests/vectors}
src="$vectors/typical.jsonl"
[ -r "$src" ] || { echo "demo: cannot read $src (set VECTORS=...)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sessionwire-demo.XXXXXX")
up_pid=
gw_pid=
cleanup() {
	[ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
	[ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Waits (up to 10 s) for "listening on 127.0.0.1:PORT" in a file; prints PORT.
port_of() {
	i=0
	while [ $i -lt 100 ]; do
		p=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$1" 2>/dev/null | head -n 1 | sed 's/.*://')
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	echo "demo: $2 did not start; its output:" >&2
	cat "$1" >&2
	return 1
}

# Stand-in upstream, recording every request it gets.
"$build/fake-upstream" --port 0 --log "$work/upstream.log" > "$work/upstream.out" 2>&1 &
up_pid=$!
up_port=$(port_of "$work/upstream.out" fake-upstream)

# The gateway: holds the org key; the device holds only its own token.
printf 'demo-device %s\n' demo-token-1234 > "$work/tokens"
ORQ_API_KEY=demo-org-key "$build/session-gateway" --listen 127.0.0.1:0 \
	--upstream "http://127.0.0.1:$up_port" --device-tokens "$work/tokens" \
	2> "$work/gateway.log" &
gw_pid=$!
gw_port=$(port_of "$work/gateway.log" session-gateway)
gw="http://127.0.0.1:$gw_port"
echo "fake upstream on 127.0.0.1:$up_port, session-gateway on 127.0.0.1:$gw_port"

sdk_json() { sed -n "$1{s/^{\"sdk\"://;s/,\"wire\":\".*\$//;p;}" "$src"; }
sid_of() { sed -n "$1{s/.*\"session_id\":\"\\([^\"]*\\)\".*/\\1/;p;}" "$src"; }

echo
echo "== 1. one update, PATCH as protobuf =="
sdk_json 1 > "$work/one.json"
"$build/session-codec" send --gateway "$gw" --token demo-token-1234 \
	--session "$(sid_of 1)" < "$work/one.json"

echo
echo "== 2. ten updates in one batch (POST /v1/updates) =="
sed -n '2,11{s/^{"sdk"://;s/,"wire":".*$//;p;}' "$src" > "$work/batch.jsonl"
"$build/session-codec" send --gateway "$gw" --token demo-token-1234 \
	--session "$(sid_of 2)" --seq 1 --batch "$work/batch.jsonl"

echo
echo "== what went upstream (as the official SDK would have sent it) =="
sed -n '1,3p' "$work/upstream.log"
echo "... $(grep -c . "$work/upstream.log") requests in all"

echo
echo "== bytes for the same 11 updates =="
sed -n '1,11{s/^{"sdk"://;s/,"wire":".*$//;p;}' "$src" |
	"$build/session-codec" size --lines |
	awk '/^error/ { bad++; print; next }
	     { split($1, j, "="); split($2, p, "="); js += j[2]; pb += p[2]; n++ }
	     END {
		if (bad) { print bad " updates failed"; exit 1 }
		printf "JSON bodies %d B, protobuf bodies %d B: %.1f%% of the bytes saved\n",
			js, pb, 100 * (1 - pb / js)
	     }'

echo
echo "== gateway metrics (excerpt) =="
curl -s "$gw/metrics" | grep -E '^sessionwire_(requests_total|device_bytes_total|upstream_json_bytes_total)' | head -8 || true
echo
echo "demo: done; stopping the gateway and the stand-in upstream"
