# How every cjson case of the corpus is built and probed (sourced by its case.sh after it set
# CJSON_UTILS=1 when the fix is in libcjson_utils).
LIVEGRAFT_BUILD_ARGS=()
# debian/rules: dh --buildsystem=cmake (CMAKE_BUILD_TYPE=None, dpkg-buildflags).
cjson_utils_flag=() cjson_utils_lib=()
if [ "${CJSON_UTILS:-0}" = 1 ]; then cjson_utils_flag=(-DENABLE_CJSON_UTILS=ON) cjson_utils_lib=(-lcjson_utils); fi
build_vulnerable() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="$CFLAGS $CPPFLAGS" \
    -DCMAKE_SHARED_LINKER_FLAGS="$LDFLAGS" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DENABLE_CJSON_TEST=OFF \
    "${cjson_utils_flag[@]}" &&
    cmake --build build
}
build_probe() {
  cc $CFLAGS -I"$REALWORLD" -I"$w/src" probe.c -L"$w/src/build" -Wl,-rpath,"$w/src/build" "${cjson_utils_lib[@]}" -lcjson -o probe
}
PROBE_CMD=(./probe)
incremental_build() { cmake --build build; }
