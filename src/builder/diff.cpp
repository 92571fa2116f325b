#include "builder/diff.h"

#include <elf.h>

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "builder/compare.h"
#include "builder/correlate.h"
#include "builder/eh_frame.h"
#include "builder/explain.h"
#include "builder/load.h"
#include "builder/resolve.h"
#include "builder/verify.h"

namespace lg::builder {

bool DiffResult::nothing_to_patch() const {
  for (const FunctionChange& f : functions)
    if (f.status == Status::changed) return false;
  return true;
}

namespace {

Error refused(const std::string& patched_path, const Diagnostics& diag) {
  std::string msg = fmt::format("{}: cannot be live patched:", patched_path);
  for (const std::string& r : diag.refusals) msg += "\n  - " + r;
  return Error(ErrorKind::unsupported, msg);
}

void check_against_target(DiffResult& r, const TargetBinary& target, Diagnostics& diag) {
  const Object& orig = *r.orig;
  // The original object's own local functions and objects: which of several files of one name
  // in the target is this one (locate()).
  std::set<std::string> unit_locals;
  for (const Symbol& s : orig.symbols)
    if (s.defined() && s.is_local() && (s.is_function() || s.is_object())) unit_locals.insert(s.name);
  for (FunctionChange& fc : r.functions) {
    if (fc.status != Status::changed) continue;
    auto where = locate(target, fc.name, orig.source_file, fc.local, &unit_locals);
    if (!where.ok()) {
      diag.refusals.push_back(fmt::format("changed function {}: {}", fc.name, where.error().message));
      continue;
    }
    fc.sympos = where->sympos;
    if (!target.has_code) continue;  // a debug file as the target: nothing to verify against
    for (const Symbol& f : orig.symbols) {
      if (f.name != fc.name || !f.is_function() || !f.defined()) continue;
      auto v = verify_function(orig, f, target, *where->symbol);
      if (!v.ok()) diag.refusals.push_back(v.error().message);
    }
  }
  // References the patch leaves to the target: a name with several definitions there (a
  // header's static, one copy per file that includes it) is bound to the one of this file,
  // found like a changed static function's, by its position (emit: "name,N" + livegraft_sym).
  for (const auto& [name, ext] : r.inclusion.externals) {
    if (ext.local_in_original) {
      auto where = locate(target, name, orig.source_file, true, &unit_locals);
      if (!where.ok())
        diag.refusals.push_back(fmt::format("{} (used by {}) must stay bound to the running program's copy: {}",
                                            name, ext.first_user, where.error().message));
      else if (where->sympos)
        r.bound[name] = where->sympos;
      continue;
    }
    // A global of the target whose name a static elsewhere also has: the global one. (Not in
    // the target at all, or ambiguous among globals: left to the loader's lookup by name.)
    if (std::count_if(target.symbols.begin(), target.symbols.end(), [&](const TargetSymbol& s) { return s.name == name; }) < 2)
      continue;
    if (auto where = locate(target, name, orig.source_file, false); where.ok() && where->sympos) r.bound[name] = where->sympos;
  }
}

// Direct evidence that the code of `f` (or its .cold part, where GCC puts throws) throws or lets
// an exception through: a throw, a rethrow, libstdc++'s __throw_* helpers, or a cleanup that
// resumes unwinding.
bool throws(const Object& obj, const Symbol& f) {
  const Section* sec = obj.section_of(f);
  if (!sec) return false;
  for (const Relocation& r : sec->relocations) {
    if (r.offset < f.value || r.offset >= f.value + std::max<uint64_t>(f.size, 1)) continue;
    const std::string& n = obj.symbols[r.symbol].name;
    if (n == "__cxa_throw" || n == "__cxa_rethrow" || n == "_Unwind_Resume" ||
        (n.starts_with("_ZSt") && n.find("__throw_") != std::string::npos))
      return true;
  }
  for (const Symbol* c : f.children)
    if (throws(obj, *c)) return true;
  return false;
}

// A replacement that throws, for a function GCC proved could not: callers of the original's
// unit with C++ handlers or cleanups have no call-site entry for the call, and an exception
// leaving the new code there ends in std::terminate (entry thunk or not). Said at build time.
void check_new_exceptions(const Object& orig, const Object& patched, const std::vector<const Symbol*>& replaced,
                          Diagnostics& diag) {
  for (const Symbol* g : replaced) {
    const Symbol* f = g->twin;
    if (!f || !throws(patched, *g) || throws(orig, *f)) continue;
    std::vector<std::string> sites;
    for (const Symbol& caller : orig.symbols) {
      // A caller in the patch too is replaced by its recompiled self, whose table covers the call
      // (and the switch waits until no thread is inside the old one).
      if (!caller.defined() || !caller.is_function() || &caller == f || caller.status == Status::changed) continue;
      const Section* sec = orig.section_of(caller);
      if (!sec) continue;
      for (const Relocation& r : sec->relocations) {
        if (r.offset < caller.value || r.offset >= caller.value + caller.size || r.offset == 0) continue;
        if ((r.type != R_X86_64_PLT32 && r.type != R_X86_64_PC32) || sec->data.size() < r.offset + 4 ||
            sec->data[r.offset - 1] != 0xe8)
          continue;  // not a call rel32
        RelocTarget t = resolve_target(orig, r);
        if (t.kind != TargetKind::symbol || t.symbol != f) continue;
        if (call_site_terminates(orig, sec->index, r.offset + 3).value_or(false))
          sites.push_back(fmt::format("{}+{:#x}", caller.name, r.offset + 4 - caller.value));
      }
    }
    if (!sites.empty())
      diag.warnings.push_back(fmt::format(
          "the new {} throws, but the original could not: its caller(s) at {} were compiled knowing that (their "
          "exception tables have no entry for the call), so an exception leaving the new {} there ends in "
          "std::terminate; catch it inside {}, or patch those callers too",
          f->name, fmt::join(sites, ", "), f->name, f->name));
  }
}

// Where the patch keeps the address of a function it replaces (squid's icpHandleUdp registers
// itself with its event loop on every call): the emitted reference is to the original, so the
// pointer the program keeps outlives a revert (it crashed at the first request after one, on
// squid CVE-2026-33515, when it led into the patch). A kept address of a NEW function has no
// original: the patch then keeps its code mapped after a revert (kept_new).
void find_kept_addresses(DiffResult& r) {
  for (size_t index : r.inclusion.sections) {
    const Section& sec = r.patched->sections[index];
    for (const Relocation& rel : sec.relocations) {
      if (const Symbol* g = kept_address_of(*r.patched, sec, rel, r.inclusion.added_functions)) r.kept_new.insert(g->name);
      const Symbol* f = kept_address_of(*r.patched, sec, rel, r.inclusion.replaced);
      if (!f) continue;
      const std::string& name = f->twin ? f->twin->name : f->name;
      uint64_t sympos = 0;
      for (const FunctionChange& fc : r.functions)
        if (fc.status == Status::changed && fc.name == name) sympos = fc.sympos;
      r.originals[name] = sympos;
    }
  }
}

}  // namespace

Result<DiffResult> diff_objects(const DiffOptions& options) {
  DiffResult r;
  auto t = std::chrono::steady_clock::now();
  auto lap = [&](const char* pass) {
    auto now = std::chrono::steady_clock::now();
    r.timings.emplace_back(pass, std::chrono::duration<double>(now - t).count());
    t = now;
  };
  LG_TRY(Object orig, load_object(options.orig_path));
  LG_TRY(Object patched, load_object(options.patched_path));
  r.orig = std::make_unique<Object>(std::move(orig));
  r.patched = std::make_unique<Object>(std::move(patched));
  lap("load");

  Diagnostics diag;
  correlate(*r.orig, *r.patched, diag);
  lap("correlate");
  compare(*r.orig, *r.patched, diag);
  lap("compare");
  r.inclusion = include(*r.orig, *r.patched, diag);
  lap("include");
  check_new_exceptions(*r.orig, *r.patched, r.inclusion.replaced, diag);

  if (!r.inclusion.replaced.empty()) {
    Explainer why(*r.orig, *r.patched);
    for (const Symbol* s : r.inclusion.replaced)
      r.functions.push_back({s->twin->name, Status::changed, 0, s->twin->is_local(), why.reasons(*s)});
    lap("explain");
  }
  for (const Symbol* s : r.inclusion.added_functions) r.functions.push_back({s->name, Status::added, 0, s->is_local()});
  for (const Symbol& s : r.patched->symbols)
    if (s.line_only) r.line_only.push_back(s.twin ? s.twin->name : s.name);
  for (const Symbol* s : r.inclusion.added_data) r.new_data.push_back(s->name);
  for (const auto& [name, ext] : r.inclusion.externals) r.externals.push_back(name);

  if (options.target) check_against_target(r, *options.target, diag);
  find_kept_addresses(r);
  lap("verify");
  r.warnings = diag.warnings;
  if (!diag.ok()) return refused(options.patched_path, diag);
  return r;
}

}  // namespace lg::builder
