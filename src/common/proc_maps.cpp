#include "common/proc_maps.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "common/fd.h"

namespace lg {

Result<std::string> read_text_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "open {}", path);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorKind::io, "read {}", path);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

Result<std::string> read_proc_maps_text(pid_t pid) {
  LG_TRY(auto text, read_text_file(fmt::format("/proc/{}/maps", pid)));
  if (!text.empty()) return text;
  // A live process always has mappings: empty means the leader exited (main called
  // pthread_exit) and its /proc/PID/maps has no mm to show. Any live thread shares the mm.
  DIR* dir = ::opendir(fmt::format("/proc/{}/task", pid).c_str());
  if (!dir) return text;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto t = read_text_file(fmt::format("/proc/{}/task/{}/maps", pid, e->d_name));
    if (t && !t->empty()) {
      text = std::move(*t);
      break;
    }
  }
  ::closedir(dir);
  return text;
}

Result<std::vector<Mapping>> parse_proc_maps(const std::string& text) {
  std::vector<Mapping> maps;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    uint64_t lo, hi, off, inode;
    char perms[5] = {};
    unsigned dev_major, dev_minor;
    int path_pos = 0;
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n", &lo, &hi, perms,
                    &off, &dev_major, &dev_minor, &inode, &path_pos) < 7)
      return make_error(ErrorKind::io, "unparsable line in maps: '{}'", line);
    Mapping m;
    m.range = {RemoteAddr(lo), RemoteAddr(hi)};
    m.read = perms[0] == 'r';
    m.write = perms[1] == 'w';
    m.exec = perms[2] == 'x';
    m.shared = perms[3] == 's';
    m.offset = off;
    m.inode = inode;
    if (path_pos > 0 && static_cast<size_t>(path_pos) <= line.size()) m.path = line.substr(static_cast<size_t>(path_pos));
    maps.push_back(std::move(m));
  }
  return maps;
}

Result<std::vector<Mapping>> read_proc_maps(pid_t pid) {
  LG_TRY(auto text, read_proc_maps_text(pid));
  return parse_proc_maps(text);
}

std::optional<std::string_view> proc_status_field(std::string_view status, std::string_view name) {
  for (size_t pos = 0; pos < status.size();) {
    size_t end = status.find('\n', pos);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(pos, end - pos);
    if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ':') {
      line.remove_prefix(name.size() + 1);
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      return line;
    }
    pos = end + 1;
  }
  return std::nullopt;
}

}  // namespace lg
