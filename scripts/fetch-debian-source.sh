#!/usr/bin/env bash
# Usage: scripts/fetch-debian-source.sh NAME[=VERSION] DESTDIR
#
# Gets the Debian source package NAME (for example lua5.4; pinned with lua5.4=5.4.4-3+deb12u1)
# into DESTDIR with `apt-get source`.
# The deb-src entries are derived from this machine's own apt sources (the archive it already
# uses), written to a separate file under /etc/apt/sources.list.d/; nothing here names a host.
# Cached: when DESTDIR already holds an unpacked source tree of NAME, it prints that directory
# and does nothing else.
#
# Prints the unpacked source directory on the last line of stdout.
# Exit codes: 0 ok, 2 usage, 77 apt/the network is unavailable (callers treat it as "skip").
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 NAME DESTDIR" >&2
  exit 2
fi
spec=$1
name=${spec%%=*}
dest=$2
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# An unpacked tree is NAME-VERSION/ with debian/ inside; `apt-get source` writes a .dsc beside it.
find_tree() {
  local d
  for d in "$dest/$name"-*/; do
    [ -d "$d/debian" ] && { echo "${d%/}"; return 0; }
  done
  return 1
}
if tree=$(find_tree); then
  echo "$tree"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo -n)
  else
    echo "fetch-debian-source: not root and no password-less sudo; cannot configure apt" >&2
    exit 77
  fi
fi

srcfile=/etc/apt/sources.list.d/livegraft-deb-src.sources
srclist=/etc/apt/sources.list.d/livegraft-deb-src.list
if [ ! -e "$srcfile" ] && [ ! -e "$srclist" ]; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: the same stanzas with `Types: deb-src` (URIs, suites, components and keys as the
    # machine's own `deb` entries).
    sed -E 's/^([Tt]ypes:).*/\1 deb-src/' /etc/apt/sources.list.d/debian.sources >"$tmp"
    out=$srcfile
  elif [ -f /etc/apt/sources.list ]; then
    # One-line format: every active `deb` line duplicated as `deb-src`.
    sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' /etc/apt/sources.list >"$tmp"
    out=$srclist
  else
    echo "fetch-debian-source: no apt sources found (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)" >&2
    exit 77
  fi
  if ! grep -q 'deb-src' "$tmp"; then
    echo "fetch-debian-source: could not derive any deb-src entry from the apt sources" >&2
    exit 77
  fi
  "${sudo_cmd[@]}" install -m 0644 "$tmp" "$out"
  echo "fetch-debian-source: wrote $out" >&2
fi

# apt-get source needs the Sources indices: update once (or again when they are missing).
# (grep reads all of apt-cache's output: with -q it would exit early and pipefail would see
# apt-cache die of SIGPIPE.)
has_source() { apt-cache showsrc "$name" 2>/dev/null | grep '^Package:' >/dev/null; }
if ! has_source; then
  echo "fetch-debian-source: apt-get update" >&2
  if ! "${sudo_cmd[@]}" apt-get update -q >&2; then
    echo "fetch-debian-source: apt-get update failed (no network?)" >&2
    exit 77
  fi
  if ! has_source; then
    echo "fetch-debian-source: no source package '$name' in the configured archive" >&2
    exit 77
  fi
fi

if ! command -v dpkg-source >/dev/null; then
  echo "fetch-debian-source: installing dpkg-dev" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dpkg-dev >&2 || {
    echo "fetch-debian-source: cannot install dpkg-dev" >&2
    exit 77
  }
fi

echo "fetch-debian-source: apt-get source $spec into $dest" >&2
if ! (cd "$dest" && apt-get source -q "$spec" >&2); then
  echo "fetch-debian-source: apt-get source $spec failed (no network or that version is gone)" >&2
  exit 77
fi
if ! tree=$(find_tree); then
  echo "fetch-debian-source: apt-get source did not unpack a $name-*/ tree into $dest" >&2
  exit 1
fi
echo "$tree"
