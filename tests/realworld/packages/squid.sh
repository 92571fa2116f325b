# How every squid case of the corpus is built and probed (sourced by its case.sh, which sets
# ICP_URL: the URL field of the ICP query the probe sends; ICP_TAIL: bytes after its NUL;
# ICP_PRIME: a URL queried first, its reply ignored).
# The target is the squid executable itself (C++), running as the proxy server it is
# (`squid -N`: in the foreground, one process, as user proxy); `probe_ask` sends one ICP query
# over UDP to its icp_port on 127.0.0.1, from 127.0.0.2 (squid drops ICP packets from its own
# address, whatever the port, as loops), and prints the reply (opcode and URL).
#
# debian/rules: dh with autoreconf and dpkg-buildflags (+ -Wno-error=deprecated-declarations),
# the configure flags of the gnutls flavour (the `squid` package). Departs from it: with
# dependency tracking (dh passes --disable-dependency-tracking: an incremental build would not
# see a changed header), the openssl flavour not built, and only compat/, lib/ and src/ (the
# squid executable and its own helpers; not helpers/, tools/, doc/).
NEEDS=(autoconf automake libtool libltdl-dev pkg-config ed libcap2-dev libecap3-dev libexpat1-dev
  libgnutls28-dev libkrb5-dev comerr-dev libldap2-dev libnetfilter-conntrack-dev libpam0g-dev
  libsasl2-dev libsystemd-dev libtdb-dev libxml2-dev nettle-dev)
CFLAGS="$CFLAGS -Wno-error=deprecated-declarations"
CXXFLAGS="$CXXFLAGS -Wno-error=deprecated-declarations"
squid_make() { make -j2 -C compat && make -j2 -C lib && make -j2 -C src; }
LIVEGRAFT_BUILD_ARGS=(--build-command "make -j2 -C compat && make -j2 -C lib && make -j2 -C src")
build_vulnerable() {
  local dh
  mapfile -t dh < <(dh_configure_args)
  autoreconf -fi &&
    ./configure "${dh[@]}" \
      CFLAGS="$CFLAGS" CXXFLAGS="$CXXFLAGS" CPPFLAGS="$CPPFLAGS" LDFLAGS="$LDFLAGS" \
      BUILDCXXFLAGS="$CXXFLAGS $CPPFLAGS $LDFLAGS" BUILDCXX=g++ \
      --with-build-environment=default --enable-build-info="Debian linux" \
      --datadir=/usr/share/squid --sysconfdir=/etc/squid --libexecdir=/usr/lib/squid \
      --enable-inline --disable-arch-native --enable-async-io=8 \
      --enable-storeio="ufs,aufs,diskd,rock" --enable-removal-policies="lru,heap" \
      --enable-delay-pools --enable-cache-digests --enable-icap-client \
      --enable-follow-x-forwarded-for \
      --enable-auth-basic="DB,fake,getpwnam,LDAP,NCSA,PAM,POP3,RADIUS,SASL,SMB" \
      --enable-auth-digest="file,LDAP" --enable-auth-negotiate="kerberos,wrapper" \
      --enable-auth-ntlm="fake,SMB_LM" \
      --enable-external-acl-helpers="file_userip,kerberos_ldap_group,LDAP_group,session,SQL_session,time_quota,unix_group,wbinfo_group" \
      --enable-security-cert-validators="fake" --enable-storeid-rewrite-helpers="file" \
      --enable-url-rewrite-helpers="fake" --enable-eui --enable-icmp --enable-zph-qos \
      --enable-ecap --disable-translation --with-swapdir=/var/spool/squid \
      --with-logdir=/var/log/squid --with-pidfile=/run/squid.pid --with-filedescriptors=65536 \
      --with-large-files --with-default-user=proxy --disable-esi \
      --enable-linux-netfilter --with-systemd --with-gnutls &&
    squid_make
}
# The configuration: loopback only, free ports picked now, no cache directory, every file under
# $w/run (writable by proxy, the user squid switches to).
build_probe() {
  mkdir -p run && chmod 0777 run &&
    read -r HTTP_PORT ICP_PORT < <(python3 -c '
import socket
t = socket.socket(); t.bind(("127.0.0.1", 0))
u = socket.socket(type=socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
print(t.getsockname()[1], u.getsockname()[1])') &&
    echo "$ICP_PORT" >icp_port &&
    cat >squid.conf <<CONF
http_port 127.0.0.1:$HTTP_PORT
icp_port $ICP_PORT
udp_incoming_address 127.0.0.1
acl probe src 127.0.0.0/8
icp_access allow probe
http_access deny all
cache_effective_user proxy
pid_filename $w/run/squid.pid
cache_log $w/run/cache.log
access_log stdio:$w/run/access.log
cache_store_log none
netdb_filename none
coredump_dir $w/run
unlinkd_program $w/src/src/unlinkd
mime_table $w/src/src/mime.conf.default
error_directory $w/src/errors/templates
icon_directory $w/src/icons/silk
pinger_enable off
cache_mem 8 MB
shutdown_lifetime 1 seconds
dns_nameservers 127.0.0.1
CONF
}
# Started as user proxy (not as root dropping to it itself): squid keeps root as its saved uid
# when it drops privileges, and the agent cannot then write the process's code (docs/realworld.md).
PROBE_CMD=(setpriv --reuid=proxy --regid=proxy --clear-groups "$w/src/src/squid" -N -f "$w/squid.conf")
# One request: an ICP_QUERY; the answer: "OPCODE URL" of the reply, or "no reply".
probe_ask() { python3 "$REALWORLD/packages/squid-icp.py" "$(cat "$w/icp_port")" "$ICP_URL" "${ICP_TAIL:-}" "${ICP_PRIME:-}"; }
incremental_build() { squid_make; }
