#include "controller/apply_plan.h"

#include <sys/uio.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "common/hex.h"
#include "elf/dwarf_producer.h"
#include "x86/patchability.h"
#include "x86/register_use.h"

namespace lg {

namespace {

// Reads target memory without ptrace-attaching (process_vm_readv needs the same permission as
// ptrace; failures say so).
Result<std::vector<uint8_t>> peek(pid_t pid, RemoteAddr addr, size_t len) {
  std::vector<uint8_t> out(len);
  iovec local{out.data(), len};
  iovec remote{reinterpret_cast<void*>(addr.value), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n < 0) {
    if (errno == EPERM || errno == EACCES)
      return Error(ErrorKind::permission, fmt::format("may not read the memory of process {}: {}", pid, std::strerror(errno)),
                   errno, "run livegraft as the process's owner or as root");
    if (errno == ESRCH) return make_error(ErrorKind::not_found, "process {} exited", pid);
    return make_errno_error(ErrorKind::io, "reading {} bytes at {} in process {}", len, addr, pid);
  }
  if (static_cast<size_t>(n) != len)
    return make_error(ErrorKind::io, "short read of {} bytes at {} in process {}", len, addr, pid);
  return out;
}

bool is_piece_of(const std::string& piece, const std::string& func) {
  if (piece.size() <= func.size() || piece.compare(0, func.size(), func) != 0) return false;
  std::string_view rest(piece.c_str() + func.size());
  return rest.rfind(".cold", 0) == 0 || rest.rfind(".part.", 0) == 0;
}

// The functions of the target object with their code, decoded on demand by the register check.
struct TargetCode {
  struct Func {
    const ElfSymbol* sym;
    std::vector<uint8_t> bytes;
  };
  std::vector<Func> funcs;
  std::set<uint64_t> starts;
};

const TargetCode& target_code(LoadedObject& target, std::optional<TargetCode>& cache) {
  if (cache) return *cache;
  cache.emplace();
  for (const auto& s : target.elf->symbols()) {
    if (!s.defined() || s.type != STT_FUNC || s.size == 0) continue;
    auto bytes = target.elf->read_vaddr(s.value, s.size);
    if (!bytes) continue;
    cache->funcs.push_back({&s, std::move(*bytes)});
    cache->starts.insert(s.value);
  }
  return *cache;
}

// GCC's -fipa-ra: callers of a function that clobbers few registers may keep values in the
// others across the call. A replacement that clobbers more is refused unless every direct caller
// is shown not to rely on them (src/x86/register_use.h).
Result<void> check_register_assumptions(LoadedObject& target, const ElfSymbol& old_sym,
                                        std::span<const uint8_t> old_code, std::span<const uint8_t> new_code,
                                        const std::string& name, std::optional<TargetCode>& cache) {
  using namespace x86;
  RegSet extra = clobbered_by(new_code, 0) & ~clobbered_by(old_code, old_sym.value) & ~RegSet{1};  // rax returns
  if (extra == 0) return {};
  // Only GCC at -O2 and above does this, and only for callers compiled in the same unit as the
  // callee (or in one link-time-optimised unit); the DWARF of the target says which.
  CompileUnits units(*target.elf);
  auto producer = units.producer_of(old_sym.value);
  if (!producer_may_use_ipa_ra(producer)) return {};
  std::optional<uint64_t> unit = producer_is_lto(producer) ? std::nullopt : units.unit_of(old_sym.value);
  const TargetCode& code = target_code(target, cache);
  auto known = [&](uint64_t a) { return code.starts.count(a) != 0; };
  for (const auto& f : code.funcs) {
    if (unit) {
      auto caller_unit = units.unit_of(f.sym->value);
      if (caller_unit && *caller_unit != *unit) continue;  // another translation unit: no IPA-RA
    }
    auto sites = call_sites(f.bytes, f.sym->value, old_sym.value);
    if (sites.returns.empty() && !sites.tail_jumps) continue;
    bool callers_assume_all = calls_unknown(f.bytes, f.sym->value, known);
    auto refuse = [&](const std::string& why) {
      return Error(ErrorKind::unsupported,
                   fmt::format("the replacement of '{}' changes registers the original never touched ({}), and {}",
                               name, describe(extra), why),
                   0,
                   "the target was built with GCC's -fipa-ra (default at -O2), which lets callers keep values in "
                   "those registers across the call; make the replacement touch no more registers than the "
                   "original (no calls), or rebuild the target with -fno-ipa-ra");
    };
    if (sites.tail_jumps && f.sym->value != old_sym.value && !callers_assume_all)
      return refuse(fmt::format("'{}' jumps to it as a tail call", f.sym->name));
    for (uint64_t ret : sites.returns) {
      auto r = read_after_call(f.bytes, f.sym->value, ret, extra, callers_assume_all);
      if (r.read)
        return refuse(fmt::format("'{}' reads {} after calling it (at {}+{:#x})", f.sym->name, describe(r.read),
                                  f.sym->name, r.at - f.sym->value));
      if (r.unsure)
        return refuse(fmt::format("livegraft cannot prove that '{}' does not rely on them after calling it (at {}+{:#x})",
                                  f.sym->name, f.sym->name, r.at - f.sym->value));
    }
  }
  return {};
}

// Resolves, checks and plans one replaced function; [new_code] is the replacement's code.
Result<PlannedFunc> plan_func(pid_t pid, LoadedObject& target, const PatchFunc& f, std::span<const uint8_t> new_code,
                              const std::vector<RemoteAddr>& redirected, std::optional<TargetCode>& code_cache) {
  const ElfFile& elf = *target.elf;
  LG_TRY(auto sym, elf.find_symbol(f.old_name, f.old_sympos));
  if (sym.type == STT_GNU_IFUNC)
    return make_error(ErrorKind::unsupported, "'{}' in {} is an IFUNC resolver: patch the implementation it selects instead",
                      f.old_name, target.path);
  if (sym.type != STT_FUNC)
    return make_error(ErrorKind::bad_patch, "'{}' in {} is not a function (symbol type {})", f.old_name, target.path,
                      sym.type);
  if (sym.size == 0)
    return make_error(ErrorKind::unsupported, "'{}' in {} has no size in the symbol table: cannot check it is patchable",
                      f.old_name, target.path);
  LG_TRY(auto file_bytes, elf.read_vaddr(sym.value, sym.size));
  PlannedFunc p;
  p.old_name = f.old_name;
  p.old_sympos = f.old_sympos;
  p.addr = target.runtime(sym.value);
  p.size = sym.size;
  LG_TRY(auto site, x86::check_patchable(file_bytes, p.addr.value, f.old_name));
  LG_TRY_VOID(check_register_assumptions(target, sym, file_bytes, new_code, f.old_name, code_cache));
  p.jump_addr = RemoteAddr(site.jump_addr);
  size_t off = site.jump_addr - p.addr.value;
  p.orig_bytes.assign(file_bytes.begin() + static_cast<long>(off), file_bytes.begin() + static_cast<long>(off + 5));

  LG_TRY(auto mem, peek(pid, p.addr, sym.size));
  if (mem != file_bytes) {
    bool ours = std::find(redirected.begin(), redirected.end(), p.jump_addr) != redirected.end();
    bool rest_equal = ours && std::equal(mem.begin(), mem.begin() + static_cast<long>(off), file_bytes.begin()) &&
                      std::equal(mem.begin() + static_cast<long>(off + 5), mem.end(),
                                 file_bytes.begin() + static_cast<long>(off + 5));
    if (!rest_equal)
      return Error(ErrorKind::mismatch,
                   fmt::format("the code of '{}' in process {} differs from {}: the running program is not the file "
                               "on disk, or another tool changed it",
                               f.old_name, pid, target.path),
                   0, "rebuild the patch against the binary the process runs");
  }
  for (const auto& s : elf.symbols())
    if (s.defined() && s.type == STT_FUNC && s.size && is_piece_of(s.name, f.old_name))
      p.extra_ranges.push_back({target.runtime(s.value), target.runtime(s.value + s.size)});
  return p;
}

}  // namespace

std::vector<RemoteRange> ApplyPlan::original_ranges() const {
  std::vector<RemoteRange> r;
  for (const auto& f : funcs) {
    r.push_back({f.addr, f.addr + static_cast<int64_t>(f.size)});
    r.insert(r.end(), f.extra_ranges.begin(), f.extra_ranges.end());
  }
  return r;
}

nlohmann::json ApplyPlan::load_request(const std::string& absolute_path) const {
  nlohmann::json funcs_j = nlohmann::json::array();
  for (const auto& f : funcs)
    funcs_j.push_back({{"old_name", f.old_name},
                       {"old_sympos", f.old_sympos},
                       {"old_addr", f.addr.value},
                       {"jump_addr", f.jump_addr.value},
                       {"orig_bytes", to_hex(f.orig_bytes)}});
  return {{"op", "load"},
          {"path", absolute_path},
          {"object", {{"name", object_name}, {"lo", object_range.lo.value}, {"hi", object_range.hi.value}}},
          {"funcs", funcs_j},
          {"symbols", symbols},
          {"dlsym", dlsym}};
}

Result<ApplyPlan> plan_apply(pid_t pid, const std::string& patch_path, const std::vector<RemoteAddr>& redirected) {
  ApplyPlan plan;
  // 1. The file is opened and read once; everything below, and the agent, use these bytes.
  LG_TRY(auto file, open_patch_file(patch_path));
  LG_TRY(plan.patch, read_patch_object(file.bytes, patch_path));
  if (plan.patch.objects.size() != 1)
    return make_error(ErrorKind::unsupported, "{}: a patch must target exactly one object in layout version 1",
                      patch_path);
  const PatchTargetObject& obj = plan.patch.objects[0];

  LG_TRY(auto image, ProcessImage::read(pid));
  LoadedObject* target = nullptr;
  if (obj.name) {
    LG_TRY(target, image.find(*obj.name));
  } else {
    LG_TRY(target, image.main_executable());
  }
  LG_TRY_VOID(image.open(*target));
  plan.object_name = obj.name.value_or("");
  plan.object_path = target->path;
  plan.object_range = target->range;
  plan.build_id = target->elf->build_id().value_or("");
  if (obj.build_id && *obj.build_id != plan.build_id)
    return Error(ErrorKind::mismatch,
                 fmt::format("build-id mismatch: patch '{}' is for build-id {}, but process {} runs {} with build-id {}",
                             plan.patch.name, *obj.build_id, pid, target->path,
                             plan.build_id.empty() ? "(none)" : plan.build_id),
                 0, "build the patch against the exact binary the process runs");

  std::optional<TargetCode> target_code_cache;
  std::set<std::string> seen;
  for (const auto& f : obj.funcs) {
    if (!seen.insert(fmt::format("{}#{}", f.old_name, f.old_sympos)).second)
      return make_error(ErrorKind::bad_patch, "{}: function '{}' is replaced twice in one patch", patch_path, f.old_name);
    auto p = plan_func(pid, *target, f, f.new_code, redirected, target_code_cache);
    if (!p) return std::move(p).error().context(fmt::format("patch '{}'", plan.patch.name));
    plan.funcs.push_back(std::move(*p));
  }

  for (const auto& u : plan.patch.undefined) {
    LG_TRY(auto r, image.lookup_in(*target, u.name));
    if (r && !r->ifunc) {
      plan.symbols[u.name] = r->addr.value;
      continue;
    }
    // Not in the target object: a global of another object. The agent resolves it with dlsym,
    // which follows the dynamic linker's rules (interposition such as a preloaded allocator,
    // default symbol versions); here we only make sure it exists before touching anything.
    if (!r) {
      LG_TRY(r, image.lookup_global(u.name));
    }
    if (!r) {
      if (u.weak) {
        plan.symbols[u.name] = 0;
        continue;
      }
      return Error(ErrorKind::not_found,
                   fmt::format("patch '{}' needs symbol '{}', which neither {} nor any library of process {} defines",
                               plan.patch.name, u.name, target->path, pid),
                   0, "check the spelling (C++ names are mangled) or that the target is built with a symbol table");
    }
    plan.dlsym.push_back(u.name);
  }
  LG_TRY(plan.patch_fd, sealed_copy(file.bytes, "livegraft-patch:" + plan.patch.name));
  return plan;
}

}  // namespace lg
