// A relocatable object opened with libdwfl's offline mode, which lays its sections out and
// applies the relocations of its debug sections (so symbol addresses and DWARF pcs meet).
#pragma once

#include <elfutils/libdwfl.h>

#include <memory>
#include <string>

namespace lg::builder {

struct OfflineDwfl {
  std::unique_ptr<Dwfl, void (*)(Dwfl*)> dwfl{nullptr, dwfl_end};
  Dwfl_Module* module = nullptr;  // null when [path] could not be reported (dwfl_errmsg says why)
};

inline OfflineDwfl open_offline(const std::string& path) {
  static char* debuginfo_path = nullptr;
  static const Dwfl_Callbacks callbacks = {
      .find_elf = nullptr,
      .find_debuginfo = dwfl_standard_find_debuginfo,
      .section_address = dwfl_offline_section_address,
      .debuginfo_path = &debuginfo_path,
  };
  OfflineDwfl out;
  out.dwfl.reset(dwfl_begin(&callbacks));
  if (!out.dwfl) return out;
  out.module = dwfl_report_offline(out.dwfl.get(), path.c_str(), path.c_str(), -1);
  if (out.module) dwfl_report_end(out.dwfl.get(), nullptr, nullptr);
  return out;
}

}  // namespace lg::builder
