#include "controller/process_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <map>

namespace lg {

namespace {

std::string basename_of(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

constexpr std::string_view kDeleted = " (deleted)";

// 1. The kernel appends " (deleted)" to the path of a mapped file that was unlinked (or renamed
//    over, as package upgrades do): proc(5), d_path(). The mapping still holds the old file.
bool strip_deleted(std::string& path) {
  if (path.size() <= kDeleted.size() || path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) != 0)
    return false;
  path.resize(path.size() - kDeleted.size());
  return true;
}

bool is_elf_candidate(const Mapping& m) {
  // Files under /dev or memfd-like names are not ELF objects we patch or resolve from.
  return m.is_file() && m.path.rfind("/dev/", 0) != 0 && m.path.rfind("/memfd:", 0) != 0;
}

}  // namespace

Result<ProcessImage> ProcessImage::read(pid_t pid) {
  ProcessImage image;
  image.pid_ = pid;
  auto maps = read_proc_maps(pid);
  if (!maps) {
    if (maps.error().err == ENOENT) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
    if (maps.error().kind == ErrorKind::permission)
      return Error(ErrorKind::permission, fmt::format("may not inspect process {}: {}", pid, maps.error().message),
                   maps.error().err, "run livegraft as the process's owner or as root");
    return maps.error();
  }
  image.maps_ = std::move(*maps);
  char buf[PATH_MAX];
  ssize_t n = ::readlink(fmt::format("/proc/{}/exe", pid).c_str(), buf, sizeof buf - 1);
  if (n < 0) {
    if (errno == EACCES || errno == EPERM)
      return Error(ErrorKind::permission, fmt::format("may not inspect process {}: reading /proc/{}/exe: {}", pid, pid,
                                                      std::strerror(errno)),
                   errno, "run livegraft as the process's owner or as root");
    return make_errno_error(ErrorKind::not_found, "process {} has no executable (a kernel thread or a zombie?)", pid);
  }
  image.exe_path_.assign(buf, static_cast<size_t>(n));
  strip_deleted(image.exe_path_);
  image.debug_options_.sysroot = fmt::format("/proc/{}/root", pid);
  image.debug_options_.roots = default_debug_roots(image.debug_options_.sysroot);

  std::map<std::pair<uint64_t, std::string>, size_t> index;
  for (const auto& m : image.maps_) {
    if (!is_elf_candidate(m)) continue;
    std::string path = m.path;
    bool deleted = strip_deleted(path);
    auto key = std::make_pair(m.inode, path);
    auto it = index.find(key);
    if (it == index.end()) {
      LoadedObject o;
      o.path = path;
      o.deleted = deleted;
      o.open_path = fmt::format("/proc/{}/root{}", pid, path);
      o.map_files = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.lo.value, m.range.hi.value);
      o.range = m.range;
      o.first_offset = m.offset;
      o.inode = m.inode;
      index.emplace(key, image.objects_.size());
      image.objects_.push_back(std::move(o));
    } else {
      auto& o = image.objects_[it->second];
      if (m.range.lo < o.range.lo) {
        o.range.lo = m.range.lo;
        o.first_offset = m.offset;
      }
      if (m.range.hi > o.range.hi) o.range.hi = m.range.hi;
    }
  }
  return image;
}

Result<void> ProcessImage::open(LoadedObject& object) {
  if (object.elf) return {};
  // 2. The path names the mapped file only while it has the mapping's inode. Otherwise (deleted,
  //    or replaced by a package upgrade) read the mapped file itself: /proc/PID/map_files/<range>
  //    opens the very file the mapping holds. The kernel allows that only with CAP_SYS_ADMIN
  //    (or CAP_CHECKPOINT_RESTORE) in the initial user namespace (proc(5)).
  struct stat st {};
  if (object.deleted || ::stat(object.open_path.c_str(), &st) != 0 || st.st_ino != object.inode) {
    if (::access(object.map_files.c_str(), R_OK) != 0) {
      int e = errno;
      return Error(ErrorKind::permission,
                   fmt::format("{} in process {} was {} on disk after the process mapped it, and its mapping {} "
                               "cannot be read: {}",
                               object.path, pid_, object.deleted ? "deleted or replaced" : "replaced", object.map_files,
                               std::strerror(e)),
                   e, "reading a mapped file through /proc/PID/map_files needs CAP_SYS_ADMIN: run livegraft as root");
    }
    object.open_path = object.map_files;
  }
  auto elf = ElfFile::open(object.open_path);
  if (!elf) return std::move(elf).error().context(fmt::format("reading {}", object.display_path()));
  auto vaddr = elf->vaddr_of_offset(object.first_offset);
  if (!vaddr) return make_error(ErrorKind::mismatch, "{}: no loadable segment covers file offset {:#x}", object.path, object.first_offset);
  // The lowest mapping starts at file offset first_offset, which the ELF gives address *vaddr.
  object.bias = object.range.lo.value - *vaddr;
  object.elf = std::make_shared<ElfFile>(std::move(*elf));
  return {};
}

Result<void> ProcessImage::open_symbols(LoadedObject& object) {
  LG_TRY_VOID(open(object));
  if (object.debug_searched || object.elf->has_symtab()) return {};
  object.debug_searched = true;
  LG_TRY(auto found, find_debug_file(*object.elf, object.path, debug_options_, &object.debug_tried));
  if (found) {
    object.debug = std::move(found->elf);
    object.debug_path = std::move(found->path);
    object.debug_origin = std::move(found->origin);
  }
  return {};
}

const LoadedObject* ProcessImage::object_containing(RemoteAddr addr) const {
  for (const auto& m : maps_) {
    if (!(m.range.lo <= addr && addr < m.range.hi) || !is_elf_candidate(m)) continue;
    std::string path = m.path;
    strip_deleted(path);
    for (const auto& o : objects_)
      if (o.inode == m.inode && o.path == path) return &o;
  }
  return nullptr;
}

Result<LoadedObject*> ProcessImage::main_executable() {
  for (auto& o : objects_)
    if (o.path == exe_path_) return &o;
  return make_error(ErrorKind::not_found, "process {}: its executable {} is not mapped (deleted or replaced on disk?)",
                    pid_, exe_path_);
}

Result<LoadedObject*> ProcessImage::find(std::string_view name) {
  for (auto& o : objects_)
    if (o.path == name || basename_of(o.path) == name) return &o;
  for (auto& o : objects_) {
    if (!open(o).ok()) continue;
    if (auto soname = o.elf->soname(); soname && *soname == name) return &o;
  }
  std::string mapped;
  for (auto& o : objects_) mapped += "\n    " + o.display_path();
  return Error(ErrorKind::not_found, fmt::format("process {} has no object '{}' mapped; it maps:{}", pid_, name, mapped));
}

Result<std::optional<ResolvedSymbol>> ProcessImage::lookup_in(LoadedObject& object, std::string_view name) {
  LG_TRY_VOID(open_symbols(object));
  const ElfSymbol* found = nullptr;
  int definitions = 0;
  auto scan = [&](const std::vector<ElfSymbol>& table) {
    for (const auto& s : table) {
      if (!s.defined() || s.name != name || s.type == STT_SECTION || s.type == STT_FILE) continue;
      if (s.shndx == SHN_ABS && s.value == 0) continue;
      ++definitions;
      found = &s;
    }
  };
  scan(object.symbol_file().symbols());
  if (definitions == 0 && object.symbol_file().has_symtab()) scan(object.elf->dynamic_symbols());
  if (definitions == 0) return std::optional<ResolvedSymbol>{};
  if (definitions > 1)
    return make_error(ErrorKind::unsupported,
                      "symbol '{}' is defined {} times in {} (static symbols of several files, or a static and a "
                      "global one): the patch cannot say which one it means",
                      name, definitions, object.path);
  if (found->type == STT_TLS)
    return make_error(ErrorKind::unsupported, "symbol '{}' of {} is thread-local: not supported in patches", name,
                      object.path);
  return std::optional<ResolvedSymbol>(
      ResolvedSymbol{object.runtime(found->value), found->type == STT_GNU_IFUNC, object.path});
}

Result<std::optional<ResolvedSymbol>> ProcessImage::lookup_global(std::string_view name) {
  for (auto& o : objects_) {
    if (!open(o).ok()) continue;  // unreadable objects cannot define what we need
    for (const auto& s : o.elf->dynamic_symbols()) {
      if (!s.defined() || s.name != name) continue;
      if (s.bind != STB_GLOBAL && s.bind != STB_WEAK) continue;
      if (s.visibility != STV_DEFAULT && s.visibility != STV_PROTECTED) continue;
      if (s.type == STT_TLS)
        return make_error(ErrorKind::unsupported, "symbol '{}' of {} is thread-local: not supported in patches", name,
                          o.path);
      return std::optional<ResolvedSymbol>(ResolvedSymbol{o.runtime(s.value), s.type == STT_GNU_IFUNC, o.path});
    }
  }
  return std::optional<ResolvedSymbol>{};
}

}  // namespace lg
