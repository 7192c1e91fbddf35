#!/bin/sh
# Builds the Debian package of sfu-gateway from built binaries with dpkg-deb (no debhelper).
# Usage: scripts/make-deb.sh BUILD_DIR VERSION OUT_DIR   (run from the source tree; "make deb" does)
set -eu

build=$1
version=$2
out=$3
arch=$(dpkg --print-architecture)
stage=$out/stage
root=$stage/root
pkg=pkg/deb

rm -rf "$stage"
mkdir -p "$root/DEBIAN" "$root/usr/sbin" "$root/usr/share/man/man8" "$root/usr/share/man/man5" \
	"$root/usr/share/doc/sfu-gateway" "$root/usr/share/lintian/overrides" \
	"$root/etc/init.d" "$root/etc/default" "$root/etc/sfu-gateway" "$root/etc/logrotate.d" \
	"$root/lib/systemd/system"

# Binaries, stripped as Debian ships them (debug symbols stay in the build tree).
for b in sfu-gateway sfu-gateway-agent; do
	install -m 0755 "$build/$b" "$root/usr/sbin/$b"
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/$b"
done
for m in sfu-gateway.8 sfu-gateway-agent.8; do
	gzip -9n < "man/$m" > "$root/usr/share/man/man8/$m.gz"
done
gzip -9n < man/sfu-gateway.toml.5 > "$root/usr/share/man/man5/sfu-gateway.toml.5.gz"

# Configuration: every file under /etc is a conffile, kept on upgrade when changed.
sed 's|^DAEMON=.*|DAEMON=/usr/sbin/sfu-gateway|' scripts/sfu-gateway.init > "$root/etc/init.d/sfu-gateway"
chmod 0755 "$root/etc/init.d/sfu-gateway"
install -m 0644 etc/sfu-gateway.toml "$root/etc/sfu-gateway/sfu-gateway.toml"
# The package runs the gateway as its own user and logs to its own directory.
sed -e 's|^#USER=sfu-gateway$|USER=sfu-gateway|' \
	-e 's|^#LOG_FILE=\(.*\)$|LOG_FILE=\1|' \
	-e 's|^#DAEMON=.*|#DAEMON=/usr/sbin/sfu-gateway|' \
	etc/sfu-gateway.default > "$root/etc/default/sfu-gateway"
chmod 0600 "$root/etc/default/sfu-gateway"
install -m 0644 etc/sfu-gateway.logrotate "$root/etc/logrotate.d/sfu-gateway"
install -m 0644 etc/sfu-gateway.service "$root/lib/systemd/system/sfu-gateway.service"
(cd "$root" && find etc -type f | sort | sed 's|^|/|') > "$root/DEBIAN/conffiles"

# Documentation and the lintian overrides, each with its reason (README).
install -m 0644 "$pkg/copyright" "$root/usr/share/doc/sfu-gateway/copyright"
sed -e "s|@VERSION@|$version|" -e "s|@DATE@|$(date -R)|" "$pkg/changelog" |
	gzip -9n > "$root/usr/share/doc/sfu-gateway/changelog.Debian.gz"
install -m 0644 "$pkg/lintian-overrides" "$root/usr/share/lintian/overrides/sfu-gateway"

for s in postinst prerm postrm; do
	install -m 0755 "$pkg/$s" "$root/DEBIAN/$s"
done

# Shared-library dependencies as dpkg-shlibdeps finds them (it wants a control file).
mkdir -p "$stage/debian"
printf 'Source: sfu-gateway\n\nPackage: sfu-gateway\nArchitecture: any\n' > "$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O "root/usr/sbin/sfu-gateway" "root/usr/sbin/sfu-gateway-agent" 2> /dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || {
	echo "make-deb: dpkg-shlibdeps found no dependencies" >&2
	exit 1
}
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
	-e "s|@DEPENDS@|$depends|" "$pkg/control.in" > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
	xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

deb=$out/sfu-gateway_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "$deb"
