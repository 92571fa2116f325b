# How every memcached case of the corpus is built and probed (sourced by its case.sh, which sets
# MEMCACHED_MODE: "proxy" (memcached as its own proxy: a Lua route answers every get itself, no
# backend) or "sasl" (SASL authentication against a password file); MEMCACHED_CONFIGURE: the
# configure flags it adds to Debian's; MC_ASK: the client's arguments after the port, one
# request, see packages/memcached-client.py).
# The target is the memcached executable itself (C, libevent, 4 worker threads), running as the
# server it is, in the foreground, as user nobody, on a free TCP port of 127.0.0.1 (UDP off).
# probe_ask is one request over loopback; the same client, as a load generator (probe_load), sends
# requests from 8 connections while the fix is applied and reverted, so the per-thread
# transition happens on busy worker threads.
#
# debian/rules: dh (autoreconf, dpkg-buildflags with hardening=+all), configure
# `--enable-sasl --enable-tls`. Departs from it: with dependency tracking (dh passes
# --disable-dependency-tracking: an incremental build would not see a changed header), only the
# memcached executable built (not memcached-debug, testapp, the manual), and the case's
# MEMCACHED_CONFIGURE: Debian's build compiles none of the three fixes' code (the proxy needs
# --enable-proxy, the SASL password file --enable-sasl-pwdb), so each case enables the code its
# fix is for (docs/realworld.md).
NEEDS=(autoconf automake pkg-config libevent-dev libsasl2-dev libsasl2-modules libssl-dev)
memcached_make() {
  # The proxy links the vendored Lua and mcmc (vendor/Makefile, upstream's own flags).
  if [ "$MEMCACHED_MODE" = proxy ]; then make -C vendor || return 1; fi
  make -j2 memcached
}
LIVEGRAFT_BUILD_ARGS=(--build-command "make -j2 memcached")
# --enable-tls links libssl: libcrypto imports makecontext/setcontext for OpenSSL's ASYNC jobs, and
# `livegraft apply` refuses a process that may switch stacks. memcached never starts one (it
# sets no SSL_MODE_ASYNC; the probe does not even enable TLS, no -Z), so no thread runs on a
# stack of its own.
LIVEGRAFT_APPLY_ARGS=(--allow-stack-switching)
build_vulnerable() {
  local dh
  mapfile -t dh < <(dh_configure_args)
  autoreconf -fi &&
    ./configure "${dh[@]}" \
      CFLAGS="$CFLAGS" CPPFLAGS="$CPPFLAGS" LDFLAGS="$LDFLAGS" \
      --enable-sasl --enable-tls "${MEMCACHED_CONFIGURE[@]}" &&
    memcached_make
}
# The configuration under $w/run (readable by nobody): a free port picked now; for the proxy the
# route file, for SASL its configuration (mechanism PLAIN) and the password file.
build_probe() {
  mkdir -p run && chmod 0755 run "$w" &&
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >run/port ||
    return 1
  local extra=()
  case $MEMCACHED_MODE in
  proxy)
    cat >run/proxy.lua <<'LUA'
-- No backend: the route answers every get itself, with the key it was given (a multiget is
-- split by the proxy into one request per key, each answered here).
function mcp_config_pools(old)
    return {}
end
function mcp_config_routes(pools)
    mcp.attach(mcp.CMD_GET, function(r)
        local k = r:key()
        return "VALUE " .. k .. " 0 " .. #k .. "\r\n" .. k .. "\r\n"
    end)
end
LUA
    extra=(-o "proxy_config=$w/run/proxy.lua")
    ;;
  sasl)
    mkdir -p run/sasl && echo "mech_list: plain" >run/sasl/memcached.conf &&
      printf '%s\n' "${MEMCACHED_PWDB[@]}" >run/pwdb || return 1
    extra=(-S)
    PROBE_ENV="SASL_CONF_PATH=$w/run/sasl MEMCACHED_SASL_PWDB=$w/run/pwdb"
    ;;
  esac
  chmod -R a+rX run &&
    PROBE_CMD=(setpriv --reuid=nobody --regid=nogroup --clear-groups "$w/src/memcached"
      -l 127.0.0.1 -p "$(cat run/port)" -U 0 -t 4 -m 64 "${extra[@]}")
}
probe_ask() { python3 "$REALWORLD/packages/memcached-client.py" "${MC_ASK[0]}" "$(cat "$w/run/port")" "${MC_ASK[@]:1}"; }
probe_load() {
  exec python3 "$REALWORLD/packages/memcached-client.py" load "$w/load" "$VULNERABLE" "$FIXED" 8 -- \
    "${MC_ASK[0]}" "$(cat "$w/run/port")" "${MC_ASK[@]:1}"
}
incremental_build() { memcached_make; }
