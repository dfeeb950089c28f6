#!/bin/sh
# map_check.sh - every gateway source file is named in gw.h's module map
# (its first comment), so a reader can find each room from one place.
set -eu
cd "$(dirname "$0")/.."
map=$(sed -n '1,/\*\//p' gateway/gw.h)
bad=0
for f in gateway/*.c gateway/*.h; do
	b=$(basename "$f")
	[ "$b" = gw.h ] && continue
	case "$map" in
	*"$b"*) ;;
	*) echo "map_check: gateway/gw.h's module map does not name $b"; bad=1 ;;
	esac
done
[ "$bad" = 0 ] || { echo "map_check: FAILED (add it to the comment at the top of gateway/gw.h)"; exit 1; }
echo "map_check: every gateway source file is in gw.h's module map"
