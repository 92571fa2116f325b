// Helpers for the agent's unit tests (tests/unit/agent_*_test.cpp): compiling patch objects
// from source strings at test time and describing the test executable as a target object.
// Header-only; not part of the agent library.
#pragma once

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/proc_maps.h"
#include "common/remote.h"

namespace lg::agent::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lg-agent-test-XXXXXX";
    if (::mkdtemp(tmpl)) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

enum class Lang { c, cxx, assembler };

// Compiles [source] into [dir]/[name].o with `gcc -fPIC -O2 -c` (g++ for C++). Returns the
// object's path, or "" with [log] holding the compiler's output.
inline std::string compile_patch(const TempDir& dir, const std::string& name, const std::string& source, Lang lang, std::string* log,
                                 const std::string& extra_flags = "") {
  const char* ext = lang == Lang::c ? ".c" : lang == Lang::cxx ? ".cpp" : ".s";
  std::string src = dir.path() + "/" + name + ext, obj = dir.path() + "/" + name + ".o", out = dir.path() + "/" + name + ".log";
  std::ofstream(src) << source;
  std::string cmd = std::string(lang == Lang::cxx ? "g++" : "gcc") + " -fPIC -O2 -c -I" LG_SOURCE_DIR "/include " + extra_flags + " " + src +
                    " -o " + obj + " >" + out + " 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream in(out);
    std::stringstream ss;
    ss << cmd << "\n" << in.rdbuf();
    if (log) *log = ss.str();
    return "";
  }
  return obj;
}

// The address range of the test executable's own file mappings.
inline RemoteRange self_object_range() {
  char exe[PATH_MAX] = {};
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  RemoteRange r{RemoteAddr(~0ull), RemoteAddr(0)};
  auto maps = read_proc_maps(::getpid());
  if (n <= 0 || !maps) return {};
  for (const auto& m : *maps) {
    if (m.path != exe) continue;
    r.lo = std::min(r.lo, m.range.lo);
    r.hi = std::max(r.hi, m.range.hi);
  }
  return r;
}

// The mappings of /proc/self/maps within 4 GiB of the test executable (where the loader and
// the stub allocator place everything), without [heap]: malloc (and ASan's allocator, far
// away) may grow for the agent's own bookkeeping; what must not change is what the agent maps.
inline std::string self_maps_text() {
  auto t = read_proc_maps_text(::getpid());
  if (!t) return {};
  auto maps = parse_proc_maps(*t);  // the same text: the allocator may map between two reads
  if (!maps) return {};
  RemoteRange self = self_object_range();
  const uint64_t reach = 4ull << 30;
  std::istringstream in(*t);
  std::string line, out;
  size_t i = 0;
  while (std::getline(in, line)) {
    if (line.empty() || i >= maps->size()) continue;
    const auto& m = (*maps)[i++];
    bool near = m.range.hi.value + reach > self.lo.value && m.range.lo.value < self.hi.value + reach;
    if (near && m.path != "[heap]") out += line + "\n";
  }
  return out;
}

}  // namespace lg::agent::testing
