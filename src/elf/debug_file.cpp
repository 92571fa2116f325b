#include "elf/debug_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include "common/fd.h"

#ifdef LG_HAVE_DEBUGINFOD
#include <elfutils/debuginfod.h>
#endif

namespace lg {

namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Opens [path] as a debug file of [object]; nullopt when it is missing, unreadable or someone
// else's (the reason goes to [why]).
std::optional<std::shared_ptr<ElfFile>> try_open(const ElfFile& object, const std::string& path, std::string& why) {
  if (!readable(path)) {
    why = "absent";
    return std::nullopt;
  }
  auto elf = ElfFile::open(path);
  if (!elf) {
    why = elf.error().message;
    return std::nullopt;
  }
  if (!debug_file_matches(object, *elf)) {
    auto id = elf->build_id();
    why = fmt::format("belongs to another build (build-id {})", id ? *id : "none");
    return std::nullopt;
  }
  if (!elf->has_symtab()) {
    why = "has no .symtab";
    return std::nullopt;
  }
  return std::make_shared<ElfFile>(std::move(*elf));
}

#ifdef LG_HAVE_DEBUGINFOD
// 1. libdebuginfod's client honours DEBUGINFOD_URLS, DEBUGINFOD_CACHE_PATH and
//    DEBUGINFOD_TIMEOUT itself (debuginfod_find_debuginfo(3)); a build-id length of 0 means
//    the id is given as a hex string. It returns an fd (closed here) and the cached file's path.
std::optional<std::string> ask_debuginfod(const std::string& build_id, std::string& why) {
  debuginfod_client* client = debuginfod_begin();
  if (!client) {
    why = "the debuginfod client could not start";
    return std::nullopt;
  }
  char* path = nullptr;
  int fd = debuginfod_find_debuginfo(client, reinterpret_cast<const unsigned char*>(build_id.c_str()), 0, &path);
  debuginfod_end(client);
  if (fd < 0) {
    why = fmt::format("debuginfod: {}", std::strerror(-fd));
    return std::nullopt;
  }
  ::close(fd);
  std::string out = path ? path : "";
  std::free(path);
  if (out.empty()) {
    why = "debuginfod returned no path";
    return std::nullopt;
  }
  return out;
}
#endif

}  // namespace

std::vector<std::string> default_debug_roots(const std::string& sysroot) {
  std::vector<std::string> roots;
  if (const char* env = std::getenv("LIVEGRAFT_DEBUG_ROOT"); env && *env) {
    std::string list(env);
    size_t start = 0;
    while (start <= list.size()) {
      size_t colon = list.find(':', start);
      if (colon == std::string::npos) colon = list.size();
      if (colon > start) roots.push_back(list.substr(start, colon - start));
      start = colon + 1;
    }
    return roots;
  }
  roots.push_back(sysroot + "/usr/lib/debug");
  return roots;
}

std::optional<DebugLink> gnu_debuglink(const ElfFile& object) {
  const ElfSection* s = object.section_by_name(".gnu_debuglink");
  if (!s) return std::nullopt;
  auto data = object.section_data(s->index);
  if (!data || data->empty()) return std::nullopt;
  auto nul = std::find(data->begin(), data->end(), 0);
  if (nul == data->end() || nul == data->begin()) return std::nullopt;
  DebugLink link;
  link.name.assign(data->begin(), nul);
  // The name is NUL-padded to a multiple of 4, then the 4-byte CRC follows.
  size_t crc_off = (link.name.size() + 1 + 3) & ~size_t{3};
  if (crc_off + 4 > data->size()) return std::nullopt;
  std::memcpy(&link.crc, data->data() + crc_off, 4);
  return link;
}

Result<uint32_t> debuglink_crc_of_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_errno_error(ErrorKind::not_found, "open {}", path);
  const auto& table = crc_table();
  uint32_t crc = 0xffffffffu;
  std::array<uint8_t, 65536> buf;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_errno_error(ErrorKind::io, "read {}", path);
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) crc = table[(crc ^ buf[static_cast<size_t>(i)]) & 0xff] ^ (crc >> 8);
  }
  return crc ^ 0xffffffffu;
}

bool debug_file_matches(const ElfFile& object, const ElfFile& debug) {
  auto id = object.build_id();
  if (id) return debug.build_id() == id;
  auto link = gnu_debuglink(object);
  if (!link) return false;
  auto crc = debuglink_crc_of_file(debug.path());
  return crc && *crc == link->crc;
}

Result<std::optional<DebugFile>> find_debug_file(const ElfFile& object, const std::string& object_path,
                                                 const DebugFileOptions& options, std::vector<std::string>* tried) {
  auto note = [&](const std::string& path, const std::string& why) {
    if (tried) tried->push_back(fmt::format("{} ({})", path, why));
  };
  std::string why;
  auto id = object.build_id();

  if (!options.explicit_file.empty()) {
    LG_TRY(auto elf, ElfFile::open(options.explicit_file));
    if (!debug_file_matches(object, elf)) {
      auto other = elf.build_id();
      return Error(ErrorKind::mismatch,
                   fmt::format("--symbols {} does not belong to {}: its build-id is {}, the object's is {}",
                               options.explicit_file, object_path, other ? *other : "(none)", id ? *id : "(none)"),
                   0, "give the debug file made from the exact binary the process runs");
    }
    if (!elf.has_symtab())
      return make_error(ErrorKind::invalid_argument, "--symbols {} has no .symtab", options.explicit_file);
    return std::optional<DebugFile>(
        DebugFile{std::make_shared<ElfFile>(std::move(elf)), options.explicit_file, "--symbols"});
  }

  if (id && id->size() > 2) {
    for (const auto& root : options.roots) {
      std::string path = fmt::format("{}/.build-id/{}/{}.debug", root, id->substr(0, 2), id->substr(2));
      if (auto f = try_open(object, path, why)) return std::optional<DebugFile>(DebugFile{*f, path, "build-id"});
      note(path, why);
    }
  }

  if (auto link = gnu_debuglink(object); link && link->name.find('/') == std::string::npos) {
    std::string dir = dir_of(object_path);
    std::vector<std::string> candidates{options.sysroot + dir + "/" + link->name,
                                        options.sysroot + dir + "/.debug/" + link->name};
    for (const auto& root : options.roots) candidates.push_back(root + dir + "/" + link->name);
    for (const auto& path : candidates) {
      if (path == object.path()) continue;  // the link names the object itself
      if (auto f = try_open(object, path, why)) return std::optional<DebugFile>(DebugFile{*f, path, ".gnu_debuglink"});
      note(path, why);
    }
  }

  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (options.debuginfod && urls && *urls && id) {
#ifdef LG_HAVE_DEBUGINFOD
    if (auto path = ask_debuginfod(*id, why)) {
      if (auto f = try_open(object, *path, why)) return std::optional<DebugFile>(DebugFile{*f, *path, "debuginfod"});
    }
    note(fmt::format("debuginfod ({})", urls), why);
#else
    note(fmt::format("debuginfod ({})", urls), "livegraft was built without libdebuginfod (libdebuginfod-dev)");
#endif
  }
  return std::optional<DebugFile>{};
}

}  // namespace lg
