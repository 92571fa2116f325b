# How every expat case of the corpus is built and probed (sourced by its case.sh).
LIVEGRAFT_BUILD_ARGS=(--build-command "make -C expat/lib")
# debian/rules: buildconf.sh (autoreconf), configure with dpkg-buildflags (CFLAGS += -Wall,
# LDFLAGS = -Wl,-Bsymbolic-functions + dpkg's), make; here in the tree, the library only.
build_vulnerable() {
  cd expat && ./buildconf.sh &&
    ./configure CFLAGS="$CFLAGS -Wall" CPPFLAGS="$CPPFLAGS" LDFLAGS="-Wl,-Bsymbolic-functions $LDFLAGS" \
      --prefix=/usr --without-docbook --without-examples --without-tests &&
    make -C lib
}
build_probe() {
  cc $CFLAGS -I"$REALWORLD" -I"$w/src/expat/lib" probe.c -L"$w/src/expat/lib/.libs" \
    -Wl,-rpath,"$w/src/expat/lib/.libs" -lexpat -o probe
}
PROBE_CMD=(./probe)
incremental_build() { make -C expat/lib; }
