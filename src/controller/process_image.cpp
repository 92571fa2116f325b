#include "controller/process_image.h"

#include <unistd.h>

#include <climits>
#include <map>

namespace lg {

namespace {

std::string basename_of(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool is_elf_candidate(const Mapping& m) {
  // Files under /dev or memfd-like names are not ELF objects we patch or resolve from.
  return m.is_file() && m.path.rfind("/dev/", 0) != 0 && m.path.find(" (deleted)") == std::string::npos;
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

  std::map<std::pair<uint64_t, std::string>, size_t> index;
  for (const auto& m : image.maps_) {
    if (!is_elf_candidate(m)) continue;
    auto key = std::make_pair(m.inode, m.path);
    auto it = index.find(key);
    if (it == index.end()) {
      LoadedObject o;
      o.path = m.path;
      o.open_path = fmt::format("/proc/{}/root{}", pid, m.path);
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
  auto elf = ElfFile::open(object.open_path);
  if (!elf) return std::move(elf).error().context(fmt::format("reading {}", object.path));
  auto vaddr = elf->vaddr_of_offset(object.first_offset);
  if (!vaddr) return make_error(ErrorKind::mismatch, "{}: no loadable segment covers file offset {:#x}", object.path, object.first_offset);
  // The lowest mapping starts at file offset first_offset, which the ELF gives address *vaddr.
  object.bias = object.range.lo.value - *vaddr;
  object.elf = std::make_shared<ElfFile>(std::move(*elf));
  return {};
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
  for (auto& o : objects_) mapped += "\n    " + o.path;
  return Error(ErrorKind::not_found, fmt::format("process {} has no object '{}' mapped; it maps:{}", pid_, name, mapped));
}

Result<std::optional<ResolvedSymbol>> ProcessImage::lookup_in(LoadedObject& object, std::string_view name) {
  LG_TRY_VOID(open(object));
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
  scan(object.elf->symbols());
  if (definitions == 0 && object.elf->has_symtab()) scan(object.elf->dynamic_symbols());
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
