// What a relocation really points at. GCC and gas emit many relocations against section symbols
// (".text.helper - 4", ".bss.count.0 - 8") or against string labels (".LC3 - 4"); comparing two
// builds needs the real target: the function/object symbol that covers the address, or, for
// anonymous read-only data (string literals, vector constants, __func__, switch tables), its
// content. Content keys make a new string literal elsewhere in the file not shift every other
// function's string references.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "builder/object.h"

namespace lg::builder {

enum class TargetKind {
  symbol,    // a named function/object/undefined symbol; compared by (correlated) name
  content,   // anonymous read-only data; compared by bytes; copied whole into the patch
};

struct RelocTarget {
  TargetKind kind = TargetKind::symbol;
  const Symbol* symbol = nullptr;  // symbol: the target; content: the symbol relocated against
  size_t section = 0;              // content: the section holding the data
  int64_t addend = 0;              // symbol: relative to the symbol; content: the raw addend
  std::string key;                 // content: "str:...", "const:...", "data:..."
};

// True for PC-relative relocation types whose addend includes "-4" for the displacement.
bool is_pc_relative(uint32_t type);

RelocTarget resolve_target(const Object& obj, const Relocation& rel);

// The name a symbol target compares under: the original's name for a correlated symbol of the
// patched object, the symbol's own name otherwise.
std::string compare_name(const Symbol& sym);

// Where in its target a relocation with [addend] points: PC-relative types (the "-4" of the
// displacement) at addend + 4 when the addend is exactly -4, else at the addend. 0: the entry.
int64_t offset_in_target(uint32_t type, int64_t addend);

// True when `r` is the rel32 of a call, jmp or jcc, or a PLT32: the code goes to the target
// rather than keeping its address.
bool is_branch_relocation(const Section& sec, const Relocation& r);

// The function of `functions` (CHANGED or NEW functions, symbols of `patched`) whose entry
// address `r` takes to keep it -- a `lea` of a callback, a GOT load, a function pointer in data -- rather
// than to call or jump to it; nullptr otherwise. GCC's aliases of a function (f.localalias, a
// section symbol plus offset) count as the function. A reference inside a function (a jump
// table's label) is the patch's own code, not a kept address.
const Symbol* kept_address_of(const Object& patched, const Section& sec, const Relocation& r,
                              const std::vector<const Symbol*>& functions);

// True when a defined object is anonymous read-only data that is compared by content.
bool is_content_keyed(const Object& obj, const Symbol& sym);

}  // namespace lg::builder
