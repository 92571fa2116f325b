#!/usr/bin/env bash
# Usage: prepare.sh DEBIAN_TREE DEST
#
# Makes DEST a copy of Debian's lua5.4 source tree (from scripts/fetch-debian-source.sh) that
# builds with upstream Lua's own Makefile (`make linux`): Debian builds through libtool and
# autoreconf (debian/rules), so its build-system patch is reverted here; the other Debian
# patches (module paths, CVE fixes) stay, and the one header debian/rules generates for them
# (lua5.4-deb-multiarch.h) is generated the same way.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 DEBIAN_TREE DEST" >&2
  exit 2
fi
tree=$1
dest=$2
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$tree" "$dest"
cd "$dest"
patch -R -p1 --batch --quiet < debian/patches/0001-build-system.patch
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
{
  echo '#ifndef _LUA_DEB_MULTIARCH_'
  echo '#define _LUA_DEB_MULTIARCH_'
  echo "#define DEB_HOST_MULTIARCH \"$multiarch\""
  echo '#endif'
} > src/lua5.4-deb-multiarch.h
