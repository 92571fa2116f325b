#include "agent/patch_metadata.h"

#include <livegraft/patch.h>

#include "elf/patch_checks.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace lg::agent {

namespace {

constexpr uint64_t kMaxString = 4096;
constexpr uint64_t kMaxFuncs = 100000;

class MetaReader {
 public:
  explicit MetaReader(const LoadedObject& obj) : obj_(obj) {}

  template <class T>
  Result<T> read(uint64_t addr, const char* what) const {
    if (!obj_.contains(addr, sizeof(T)))
      return make_error(ErrorKind::bad_patch, "{}: {} at {:#x} is not inside the loaded patch", obj_.path(), what, addr);
    T v;
    std::memcpy(&v, reinterpret_cast<const void*>(addr), sizeof v);
    return v;
  }

  Result<std::string> string(uint64_t addr, const char* what) const {
    if (!obj_.contains(addr, 1))
      return make_error(ErrorKind::bad_patch, "{}: {} at {:#x} is not inside the loaded patch", obj_.path(), what, addr);
    uint64_t max = std::min<uint64_t>(kMaxString, obj_.base() + obj_.size() - addr);
    const char* s = reinterpret_cast<const char*>(addr);
    size_t n = strnlen(s, max);
    if (n == max) return make_error(ErrorKind::bad_patch, "{}: {} at {:#x} is not a terminated string", obj_.path(), what, addr);
    return std::string(s, n);
  }

 private:
  const LoadedObject& obj_;
};

}  // namespace

Result<PatchMetadata> read_patch_metadata(const LoadedObject& obj) {
  auto sec = obj.section(LIVEGRAFT_SECTION);
  if (!sec) return make_error(ErrorKind::bad_patch, "{}: no {} section: write the patch with LIVEGRAFT_PATCH()", obj.path(), LIVEGRAFT_SECTION);
  if (sec->size() < sizeof(livegraft_patch))
    return make_error(ErrorKind::bad_patch, "{}: section {} is {} bytes, smaller than the root ({} bytes)", obj.path(), LIVEGRAFT_SECTION,
                      sec->size(), sizeof(livegraft_patch));
  MetaReader r(obj);
  LG_TRY(auto root, r.read<livegraft_patch>(sec->lo.value, "the patch root"));
  if (root.magic != LIVEGRAFT_MAGIC) return make_error(ErrorKind::bad_patch, "{}: bad magic {:#x} in {}", obj.path(), root.magic, LIVEGRAFT_SECTION);
  if (root.version < LIVEGRAFT_LAYOUT_VERSION_MIN || root.version > LIVEGRAFT_LAYOUT_VERSION || root.size != sizeof(livegraft_patch))
    return make_error(ErrorKind::unsupported, "{}: metadata layout version {} (size {}); this agent reads versions {} to {}", obj.path(),
                      root.version, root.size, LIVEGRAFT_LAYOUT_VERSION_MIN, LIVEGRAFT_LAYOUT_VERSION);
  if (root.nr_objects != 1)
    return make_error(ErrorKind::unsupported, "{}: the patch has {} target objects; version 1 supports exactly one", obj.path(), root.nr_objects);
  if (root.states || root.nr_states)
    return make_error(ErrorKind::unsupported, "{}: system states are not supported yet", obj.path());
  PatchMetadata m;
  m.version = root.version;
  m.flags = root.flags;
  LG_TRY(m.name, r.string(reinterpret_cast<uint64_t>(root.name), "the patch name"));
  if (!elf::valid_patch_name(m.name))
    return make_error(ErrorKind::bad_patch, "{}: patch name '{}' is not 1-64 characters of [A-Za-z0-9_.-] (and not '.' or '..')", obj.path(), m.name);
  // Version 1's object is 72 bytes: version 2's without nr_syms (its zero `reserved` is `syms`).
  livegraft_object o{};
  if (root.version >= 2) {
    LG_TRY(o, r.read<livegraft_object>(reinterpret_cast<uint64_t>(root.objects), "the object array"));
  } else {
    struct V1Object { unsigned char bytes[offsetof(livegraft_object, nr_syms)]; };
    LG_TRY(auto v1, r.read<V1Object>(reinterpret_cast<uint64_t>(root.objects), "the object array"));
    std::memcpy(&o, v1.bytes, sizeof v1.bytes);
    if (o.syms) return make_error(ErrorKind::bad_patch, "{}: the object's reserved field is not 0 (layout version 1)", obj.path());
  }
  if (o.name) {
    LG_TRY(auto n, r.string(reinterpret_cast<uint64_t>(o.name), "the object name"));
    m.object_name = std::move(n);
  }
  if (o.build_id) {
    LG_TRY(auto b, r.string(reinterpret_cast<uint64_t>(o.build_id), "the build-id"));
    m.build_id = std::move(b);
  }
  if (o.callbacks.pre_patch || o.callbacks.post_patch || o.callbacks.pre_unpatch || o.callbacks.post_unpatch)
    return make_error(ErrorKind::unsupported, "{}: callbacks are not supported yet", obj.path());
  if (o.nr_funcs == 0 || o.nr_funcs > kMaxFuncs)
    return make_error(ErrorKind::bad_patch, "{}: the object has {} functions", obj.path(), o.nr_funcs);
  auto code = obj.code_ranges();
  for (uint64_t i = 0; i < o.nr_funcs; ++i) {
    LG_TRY(auto f, r.read<livegraft_func>(reinterpret_cast<uint64_t>(o.funcs) + i * sizeof(livegraft_func), "a function entry"));
    PatchFuncMeta fm;
    LG_TRY(fm.old_name, r.string(reinterpret_cast<uint64_t>(f.old_name), "a function name"));
    fm.old_sympos = f.old_sympos;
    fm.new_func = reinterpret_cast<uint64_t>(f.new_func);
    bool in_code = false;
    for (const auto& c : code) in_code |= c.contains(RemoteAddr(fm.new_func));
    if (!in_code)
      return make_error(ErrorKind::bad_patch, "{}: the replacement of '{}' ({:#x}) is not code of the patch", obj.path(), fm.old_name, fm.new_func);
    m.funcs.push_back(std::move(fm));
  }
  if (o.nr_syms > kMaxFuncs || (o.nr_syms && !o.syms) || (o.syms && !o.nr_syms))
    return make_error(ErrorKind::bad_patch, "{}: the object has {} bound symbols (syms {})", obj.path(), o.nr_syms,
                      o.syms ? "set" : "NULL");
  for (uint64_t i = 0; i < o.nr_syms; ++i) {
    LG_TRY(auto s, r.read<livegraft_sym>(reinterpret_cast<uint64_t>(o.syms) + i * sizeof(livegraft_sym), "a bound symbol entry"));
    PatchSymMeta sm;
    LG_TRY(sm.name, r.string(reinterpret_cast<uint64_t>(s.name), "a bound symbol's name"));
    LG_TRY(sm.old_name, r.string(reinterpret_cast<uint64_t>(s.old_name), "a bound symbol's old_name"));
    sm.old_sympos = s.old_sympos;
    m.syms.push_back(std::move(sm));
  }
  return m;
}

}  // namespace lg::agent
