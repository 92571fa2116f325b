#include "builder/thread_start.h"

#include <elf.h>

#include <set>

#include "builder/load.h"
#include "builder/resolve.h"

namespace lg::builder {

namespace {

// The relocated field of a rel32 call or jump follows its opcode byte (e8 call, e9 jmp).
bool is_call_or_jump_operand(const Section& s, const Relocation& r) {
  if (r.offset == 0 || r.offset > s.data.size()) return false;
  uint8_t op = s.data[r.offset - 1];
  return op == 0xe8 || op == 0xe9;
}

}  // namespace

Result<std::map<std::string, std::string>> thread_start_functions(const std::string& path) {
  LG_TRY(Object obj, load_object(path));
  std::map<std::string, std::string> starts;
  for (const Section& s : obj.sections) {
    if (!s.is_text() || s.relocations.empty()) continue;
    bool creates = false;
    std::set<std::string> taken;
    for (const Relocation& r : s.relocations) {
      RelocTarget t = resolve_target(obj, r);
      if (t.kind != TargetKind::symbol || !t.symbol) continue;
      if (t.symbol->name == "pthread_create") creates = true;
      else if (t.symbol->is_function() && t.symbol->defined() && t.addend == (is_pc_relative(r.type) ? -4 : 0) &&
               !is_call_or_jump_operand(s, r))
        taken.insert(t.symbol->name);
    }
    if (!creates || taken.empty()) continue;
    std::string starter;
    for (const Symbol* f : obj.symbols_in(s.index))
      if (f->is_function()) {
        starter = f->name;
        break;
      }
    for (const std::string& f : taken)
      if (f != starter) starts.emplace(f, starter);
  }
  return starts;
}

}  // namespace lg::builder
