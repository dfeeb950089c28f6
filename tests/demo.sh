#!/bin/sh
# demo.sh BUILD VECTORS - what `make run` shows until the gateway lands:
# every realistic device update of VECTORS/typical.jsonl (SDK naming, as a
# device app would build it) encoded to protobuf, and the bytes saved.
set -eu
build=${1:-build}
vectors=${2:-../shared/vectors}
codec="$build/session-codec"
src="$vectors/typical.jsonl"
[ -r "$src" ] || { echo "demo: cannot read $src (set VECTORS=...)" >&2; exit 2; }

echo "== one update, as JSON (what the SDK would send upstream) =="
sed -n '1{s/^{"sdk"://;s/,"wire":".*$//;p;}' "$src" | "$codec" canon
echo
echo "== the same update as sessionwire protobuf (hex) =="
sed -n '1{s/^{"sdk"://;s/,"wire":".*$//;p;}' "$src" | "$codec" encode --hex
echo
echo "== all $(wc -l < "$src") updates of $src =="
sed -e 's/^{"sdk"://' -e 's/,"wire":".*$//' "$src" |
	"$codec" size --lines |
	awk '/^error/ { bad++; print; next }
	     { split($1, j, "="); split($2, p, "="); js += j[2]; pb += p[2]; n++ }
	     END {
		if (bad) { print bad " updates failed"; exit 1 }
		printf "updates: %d\njson bytes: %d (mean %.1f)\nprotobuf bytes: %d (mean %.1f)\nratio: %.3f (%.1f%% of the bytes saved)\n",
			n, js, js / n, pb, pb / n, pb / js, 100 * (1 - pb / js)
	     }'
