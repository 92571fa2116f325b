# How every jq case of the corpus is built and probed (sourced by its case.sh).
LIVEGRAFT_BUILD_ARGS=()
# debian/rules: dh with autoreconf and dpkg-buildflags; here without oniguruma (its -dev package
# is not needed for this fix) and without the manual.
build_vulnerable() {
  autoreconf -fi && ./configure --with-oniguruma=no --disable-docs --disable-maintainer-mode && make
}
build_probe() {
  cc $CFLAGS -I"$REALWORLD" -I"$w/src/src" probe.c -L"$w/src/.libs" -Wl,-rpath,"$w/src/.libs" -ljq -o probe
}
PROBE_CMD=(./probe)
incremental_build() { make; }
