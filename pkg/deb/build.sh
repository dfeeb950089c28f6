#!/bin/sh
# build.sh BUILD - makes BUILD/sessionwire_<version>_<arch>.deb with
# Debian's own tools (what `make deb` runs) and prints its path last.
#
#   1. builds the programs and the library in BUILD/deb/build with
#      Debian's hardening flags (dpkg-buildflags, hardening=+all);
#   2. `make install` into BUILD/deb/root with Debian's directories
#      (PREFIX=/usr, the multiarch libdir, /lib/systemd/system);
#   3. does what debhelper would: strips, compresses the man pages,
#      writes the changelog, the copyright, md5sums, conffiles and the
#      maintainer scripts of this folder; Depends from dpkg-shlibdeps
#      (plus adduser, which postinst calls);
#   4. dpkg-deb --root-owner-group --build.
#
# The version is the VERSION file's. Nothing is written outside BUILD.
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
here=pkg/deb
version=$(cat VERSION)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
maintainer=$(sed -n 's/^Maintainer: //p' $here/control.in)
work=$build/deb
root=$work/root
out=$build/sessionwire_${version}_${arch}.deb

# Reproducible dates: the last commit's, else the VERSION file's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || stat -c %Y VERSION)
fi
export SOURCE_DATE_EPOCH

# ==== Build and install with Debian's flags and directories ====
rm -rf "$root" "$work/shlibdeps"
mkdir -p "$root"
DEB_BUILD_MAINT_OPTIONS=hardening=+all
export DEB_BUILD_MAINT_OPTIONS
eval "$(dpkg-buildflags --export=sh)"
# the sub-make appends its own flags to these (they come from the
# environment, not the command line); no sanitizer, no coverage, and
# nothing from a calling make's command line (make test SANITIZE=...)
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL
make --no-print-directory O="$work/build" SANITIZE= COVERAGE= \
	install DESTDIR="$(pwd)/$root" PREFIX=/usr \
	LIBDIR=/usr/lib/"$multiarch" SYSTEMDUNITDIR=/lib/systemd/system \
	SYSCONFDIR=/etc >"$work/make.log" 2>&1 ||
	{ cat "$work/make.log" >&2; echo "build.sh: make install failed" >&2; exit 1; }

# The package makes the user in postinst (adduser), not with sysusers.d.
rm -rf "$root/usr/lib/sysusers.d"

# ==== What debhelper would do ====
for b in "$root"/usr/bin/*; do
	strip --remove-section=.comment --remove-section=.note \
		--strip-unneeded "$b"
done
strip --strip-debug --remove-section=.comment --remove-section=.note \
	--enable-deterministic-archives "$root"/usr/lib/"$multiarch"/*.a
gzip -9n "$root"/usr/share/man/man1/* "$root"/usr/share/man/man8/*
doc=$root/usr/share/doc/sessionwire
install -m 644 $here/copyright "$doc/copyright"
{
	printf 'sessionwire (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built with make deb from the sessionwire repository%s.\n\n' \
		"$(git describe --always --dirty 2>/dev/null | sed 's/^/ at /')"
	printf ' -- %s  %s\n' "$maintainer" "$(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"

# ==== DEBIAN/ ====
mkdir -p "$root/DEBIAN" "$work/shlibdeps/debian"
install -m 755 $here/postinst $here/prerm $here/postrm "$root/DEBIAN/"
install -m 644 $here/conffiles "$root/DEBIAN/"
# dpkg-shlibdeps wants a debian/control naming the package
printf 'Source: sessionwire\n\nPackage: sessionwire\nArchitecture: any\n' \
	>"$work/shlibdeps/debian/control"
shlibs=$(cd "$work/shlibdeps" &&
	dpkg-shlibdeps -O "-e$OLDPWD/$root/usr/bin/session-codec" \
		"-e$OLDPWD/$root/usr/bin/session-gateway" 2>"$OLDPWD/$work/shlibdeps.log" |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] ||
	{ cat "$work/shlibdeps.log" >&2; echo "build.sh: dpkg-shlibdeps gave nothing" >&2; exit 1; }
size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" \
	-e "s|@INSTALLED_SIZE@|$size|" -e "s|@DEPENDS@|adduser, $shlibs|" \
	$here/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' |
	LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

# ==== The package ====
find "$root" -type d -exec chmod 755 {} +
rm -f "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
