// /proc/PID/maps, parsed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/remote.h"
#include "common/result.h"

namespace lg {

struct Mapping {
  RemoteRange range;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;  // file offset of range.lo
  uint64_t inode = 0;
  std::string path;     // empty for anonymous; "[stack]", "[vdso]", ... for special ones

  bool is_file() const { return inode != 0 && !path.empty() && path[0] == '/'; }
};

Result<std::vector<Mapping>> read_proc_maps(pid_t pid);
// Parses the text of a maps file (exposed for unit tests).
Result<std::vector<Mapping>> parse_proc_maps(const std::string& text);
// The whole text of /proc/PID/maps, for "unchanged" comparisons in tests and diagnostics. When
// the leader has exited (main called pthread_exit) it is read through a live thread instead.
Result<std::string> read_proc_maps_text(pid_t pid);
// Reads a small /proc file completely.
Result<std::string> read_text_file(const std::string& path);
// The value of the "NAME:" line of a /proc/.../status text (blanks after the colon skipped), or
// nullopt when there is no such line.
std::optional<std::string_view> proc_status_field(std::string_view status, std::string_view name);

}  // namespace lg
