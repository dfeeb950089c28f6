#!/bin/sh
# deb_test.sh PACKAGE.deb - installs the package on this machine, checks
# what it installed, purges it and checks that it is gone (make test runs
# it after `make deb`). Needs root or passwordless sudo: without them it
# FAILS (a skipped check would read as a pass). It refuses to touch a
# sessionwire that was installed before it ran, and purges what it
# installed even when a check fails.
#
# Checked after `dpkg -i`: both programs run from /usr/bin (--help,
# --version = VERSION); the installed config parses; the conffile is
# registered; the system user session-gateway and /var/lib/session-gateway
# (owned by it, 0750) exist; the unit is enabled (the multi-user.target.wants
# symlink: systemd need not be PID 1) and not running; systemd-analyze
# accepts it; sessioncodec.pc and the static library build a program.
# After `dpkg --purge`: no file, directory, symlink or mask of the package
# left. The user stays, as Debian policy has it (files it owned elsewhere
# must not pass to a future user with its id).
set -eu
deb=${1:?usage: deb_test.sh PACKAGE.deb}
version=$(cat VERSION)
unit=session-gateway.service
wants=/etc/systemd/system/multi-user.target.wants/$unit
fail=0
installed=

say() { printf 'deb_test: %s\n' "$*"; }
bad() { printf 'deb_test: FAIL: %s\n' "$*" >&2; fail=1; }

[ -f "$deb" ] || { bad "no package $deb (make deb)"; exit 1; }
if [ "$(id -u)" = 0 ]; then
	SUDO=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO="sudo -n"
else
	bad "installing the package needs root or passwordless sudo; run make test as root (CI does)"
	exit 1
fi

# One package test at a time on a machine (dpkg takes no second caller).
exec 9>"${TMPDIR:-/tmp}/sessionwire-deb-test.lock"
flock -w 600 9 || { bad "another package test holds the lock"; exit 1; }

status=$(dpkg-query -W -f='${db:Status-Status}' sessionwire 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != not-installed ]; then
	bad "sessionwire is already on this machine ($status); this test installs and purges it, so remove it first: dpkg --purge sessionwire"
	exit 1
fi

purge() {
	[ -n "$installed" ] || return 0
	installed=
	$SUDO env DEBIAN_FRONTEND=noninteractive dpkg --purge sessionwire >"$log" 2>&1 ||
		{ cat "$log" >&2; bad "dpkg --purge failed"; }
}
log=$(mktemp "${TMPDIR:-/tmp}/sessionwire-deb-test.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/sessionwire-deb-test.XXXXXX")
trap 'purge; rm -rf "$log" "$work"' EXIT
trap 'exit 1' INT TERM

# ==== Install ====
say "dpkg -i $deb"
installed=yes
$SUDO env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$log" 2>&1 ||
	{ cat "$log" >&2; bad "dpkg -i failed"; exit 1; }

# runs CMD..., expects exit 0 and OUT on its first line
first_line_is() {
	want=$1
	shift
	got=$("$@" 2>&1 | head -n 1) || { bad "$* failed"; return; }
	[ "$got" = "$want" ] || bad "$*: expected \"$want\", got \"$got\""
}
first_line_is "usage: session-gateway [OPTIONS]" env -u ORQ_API_KEY /usr/bin/session-gateway --help
first_line_is "session-gateway $version" /usr/bin/session-gateway --version
first_line_is "usage: session-codec <command> [options]" /usr/bin/session-codec --help
first_line_is "session-codec $version" /usr/bin/session-codec --version
[ "$(echo '{"duration":1500}' | /usr/bin/session-codec encode --hex)" = 20b817 ] ||
	bad "the installed session-codec does not encode"
/usr/bin/session-gateway --config /etc/session-gateway/session-gateway.conf --help >/dev/null 2>&1 ||
	bad "the installed /etc/session-gateway/session-gateway.conf does not parse"
dpkg-query -W -f='${Conffiles}\n' sessionwire | grep -q '^ /etc/session-gateway/session-gateway.conf ' ||
	bad "/etc/session-gateway/session-gateway.conf is not a conffile"

# the user and its directory
pw=$(getent passwd session-gateway || true)
if [ -z "$pw" ]; then
	bad "no user session-gateway"
else
	uid=$(echo "$pw" | cut -d: -f3)
	home=$(echo "$pw" | cut -d: -f6)
	shell=$(echo "$pw" | cut -d: -f7)
	[ "$uid" -lt 1000 ] || bad "session-gateway is not a system user (uid $uid)"
	[ "$home" = /var/lib/session-gateway ] || bad "session-gateway's home is $home"
	case $shell in */nologin|/bin/false) ;; *) bad "session-gateway has a login shell: $shell" ;; esac
fi
getent group session-gateway >/dev/null || bad "no group session-gateway"
own=$(stat -c '%U:%G %a' /var/lib/session-gateway 2>/dev/null || echo missing)
[ "$own" = "session-gateway:session-gateway 750" ] ||
	bad "/var/lib/session-gateway: expected session-gateway:session-gateway 750, found $own"

# the unit: enabled, not running
[ "$(readlink "$wants" 2>/dev/null)" = "/lib/systemd/system/$unit" ] ||
	bad "the unit is not enabled ($wants is not a link to /lib/systemd/system/$unit)"
grep -q '^ExecStart=/usr/bin/session-gateway --config /etc/session-gateway/session-gateway.conf$' \
	"/lib/systemd/system/$unit" || bad "the unit does not start /usr/bin/session-gateway with the installed config"
grep -q '^StateDirectory=session-gateway$' "/lib/systemd/system/$unit" ||
	bad "the unit does not give the service /var/lib/session-gateway"
if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit"; then
	bad "the unit was started"
fi
for exe in /proc/[0-9]*/exe; do
	if [ "$(readlink "$exe" 2>/dev/null)" = /usr/bin/session-gateway ]; then
		bad "/usr/bin/session-gateway is running (pid $(basename "$(dirname "$exe")"))"
	fi
done
if command -v systemd-analyze >/dev/null 2>&1; then
	systemd-analyze verify --man=no "/lib/systemd/system/$unit" >"$log" 2>&1 ||
		{ cat "$log" >&2; bad "systemd-analyze verify rejects the unit"; }
fi

# the library as a user of the package builds against it
[ "$(pkg-config --modversion sessioncodec 2>/dev/null)" = "$version" ] ||
	bad "pkg-config --modversion sessioncodec is not $version"
cat >"$work/use.c" <<'EOF'
#include <stdio.h>
#include <sessionwire/sessionwire.h>
int main(void)
{
	sw_buf b;
	sw_buf_init(&b, 0, NULL);
	if (sw_session_path("a/b", 3, &b, NULL) != SW_OK)
		return 1;
	printf("%.*s\n", (int)b.len, b.data);
	sw_buf_free(&b);
	return 0;
}
EOF
# shellcheck disable=SC2046 # pkg-config prints several words
if cc -o "$work/use" "$work/use.c" $(pkg-config --cflags --libs --static sessioncodec) >"$log" 2>&1; then
	[ "$("$work/use")" = /v2/traces/sessions/a%2Fb ] || bad "a program built on the installed library gives a wrong path"
else
	cat "$log" >&2
	bad "cannot build a program with pkg-config --cflags --libs --static sessioncodec"
fi

files=$(dpkg-query -L sessionwire | grep -c . || true)
say "installed: $files paths; user, /var/lib/session-gateway, conffile, unit enabled and stopped: checked"

# ==== Purge ====
say "dpkg --purge sessionwire"
purge
status=$(dpkg-query -W -f='${db:Status-Status}' sessionwire 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] || bad "sessionwire is still $status after purge"
for p in /usr/bin/session-gateway /usr/bin/session-codec /etc/session-gateway \
	/var/lib/session-gateway "/lib/systemd/system/$unit" "$wants" \
	"/etc/systemd/system/$unit" /usr/share/doc/sessionwire \
	/usr/include/sessionwire /usr/share/sessionwire \
	/var/lib/systemd/deb-systemd-helper-enabled/$unit.dsh-also \
	/var/lib/systemd/deb-systemd-helper-masked/$unit; do
	if [ -e "$p" ] || [ -L "$p" ]; then
		bad "$p is left after dpkg --purge"
	fi
done

if [ "$fail" != 0 ]; then
	say "FAILED"
	exit 1
fi
say "$(basename "$deb"): installed, checked and purged; nothing left but the user session-gateway (kept, as Debian does)"
