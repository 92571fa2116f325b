// What must hold of a patch object for the agent's loader to load it correctly, checked on the
// parsed file without mapping anything. The controller runs these checks before it touches a
// process, the agent again before it maps the patch: one definition, so what the controller
// accepts is what the agent loads. libc only (the agent links no libelf).
#pragma once

#include <string_view>

#include "common/result.h"
#include "elf/rel_object.h"

namespace lg::elf {

// Refuses (ErrorKind::unsupported): thread-local storage (STT_TLS symbols, SHF_TLS sections, TLS
// relocations), IFUNC definitions, relocation types outside src/x86/relocations.h, allocated
// sections aligned to more than a page, a 64-bit .eh_frame. Refuses (ErrorKind::bad_patch): a
// relocation of an allocated section that lies outside it or applies to SHT_NOBITS, refers to
// the null symbol (index 0) or to a symbol of a section that is not loaded, or shares its offset
// with another; a malformed .eh_frame (eh_frame_check.h) or one with an FDE whose pc_begin is not
// relocated against executable code of the patch, or whose range leaves that section; more than
// one non-empty .eh_frame.
Result<void> check_loadable(const RelObject& obj);

// The rule for patch names (docs/patch-format.md): 1 to 64 characters of [A-Za-z0-9_.-], and
// neither "." nor "..". No locale: the agent runs inside a host that may have called setlocale.
constexpr bool valid_patch_name(std::string_view n) {
  if (n.empty() || n.size() > 64 || n == "." || n == "..") return false;
  for (char c : n) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace lg::elf
