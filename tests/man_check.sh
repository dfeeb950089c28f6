#!/bin/sh
# man_check.sh BUILD - checks the man pages in docs/man/ (make test runs
# it): both must lint clean with mandoc (-W warning: any warning or error
# fails) and render without a warning from man/groff (what lintian runs);
# and every command and long option that the programs' own --help lists
# (session-codec and each of its commands, session-gateway and its spool
# and queue commands) must appear in the matching page, so a new flag cannot ship
# undocumented. Fails naming each missing flag.
set -eu
build=${1:-build}
codec_man=docs/man/session-codec.1
gw_man=docs/man/session-gateway.8
fail=0

command -v mandoc >/dev/null 2>&1 ||
	{ echo "man_check: mandoc is not installed (make deps installs it)" >&2; exit 1; }
for p in "$build/session-codec" "$build/session-gateway"; do
	[ -x "$p" ] || { echo "man_check: $p is not built" >&2; exit 1; }
done

# ==== Lint ====
for page in "$codec_man" "$gw_man"; do
	out=$(mandoc -T lint -W warning "$page" 2>&1) || true
	if [ -n "$out" ]; then
		echo "man_check: mandoc -T lint -W warning $page:" >&2
		printf '%s\n' "$out" >&2
		fail=1
	fi
	if command -v man >/dev/null 2>&1; then
		out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || true
		if [ -n "$out" ]; then
			echo "man_check: man --warnings $page:" >&2
			printf '%s\n' "$out" >&2
			fail=1
		fi
	fi
done

# ==== Every flag of --help in the page ====
# The page's source with roff's \- as -, font escapes dropped.
plain() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' "$1"
}

# The long options in a help text (stdin), one per line.
flags_of() {
	grep -o -- '--[a-z][a-z0-9-]*' | sort -u
}

# check PAGE WHAT TEXT...: each word of TEXT must be in PAGE as a whole
# word (--spool does not count as --spool-max-bytes).
check() {
	page=$1
	what=$2
	shift 2
	src=$(plain "$page")
	for w in "$@"; do
		if ! printf '%s\n' "$src" |
			grep -Eq -- "(^|[^a-z0-9-])$w([^a-z0-9-]|\$)"; then
			echo "man_check: $page does not document $w ($what lists it)" >&2
			fail=1
		fi
	done
}

codec=$build/session-codec
gw=$build/session-gateway

# session-codec: its commands, then each command's options
cmds=$("$codec" --help | sed -n '/^commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
[ -n "$cmds" ] || { echo "man_check: no commands in session-codec --help" >&2; exit 1; }
# shellcheck disable=SC2086 # one word per command
check "$codec_man" "session-codec --help" $cmds
# shellcheck disable=SC2046
check "$codec_man" "session-codec --help" $("$codec" --help | flags_of)
for c in $cmds; do
	# shellcheck disable=SC2046
	check "$codec_man" "session-codec $c --help" $("$codec" "$c" --help | flags_of)
done

# session-gateway: every option, then the spool and queue commands and
# their options
gw_flags=$(env -u ORQ_API_KEY "$gw" --help | flags_of)
[ -n "$gw_flags" ] || { echo "man_check: no options in session-gateway --help" >&2; exit 1; }
# shellcheck disable=SC2086
check "$gw_man" "session-gateway --help" $gw_flags
spool_help=$("$gw" spool --help)
spool_cmds=$(printf '%s\n' "$spool_help" | sed -n '/^Commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
# shellcheck disable=SC2086
check "$gw_man" "session-gateway spool --help" $spool_cmds
# shellcheck disable=SC2046
check "$gw_man" "session-gateway spool --help" $(printf '%s\n' "$spool_help" | flags_of)
queue_help=$("$gw" queue --help)
queue_cmds=$(printf '%s\n' "$queue_help" | sed -n '/^Commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p')
# shellcheck disable=SC2086
check "$gw_man" "session-gateway queue --help" $queue_cmds
# shellcheck disable=SC2046
check "$gw_man" "session-gateway queue --help" $(printf '%s\n' "$queue_help" | flags_of)

if [ "$fail" != 0 ]; then
	echo "man_check: FAILED (edit docs/man/)" >&2
	exit 1
fi
n_codec=$(plain "$codec_man" | wc -l)
n_gw=$(plain "$gw_man" | wc -l)
echo "man_check: session-codec.1 ($n_codec lines) and session-gateway.8 ($n_gw lines): lint clean, every command and flag of --help documented"
