#include "controller/apply_plan.h"

#include <sys/uio.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "common/hex.h"
#include "elf/dwarf_producer.h"
#include "elf/function_prototype.h"
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

// A caller may rely on registers [extra] surviving a call to [old_sym] ([hazard] says which
// caller, where): the replacement is then entered through a thunk preserving them. A thunk
// pushes onto the stack before the replacement runs, which is only right when every argument
// is in a register: the DWARF prototype must prove that. rax, and the registers the prototype
// may return in, are never preserved; the upper half of a vector return register cannot be
// kept apart from its low half (the value), so needing it is refused. Vector state is saved at
// the widths [cpu] has (x86::thunk_regs: this machine's, where the thunk runs, narrowed to what
// the original's unit uses).
Result<x86::ThunkRegs> entry_thunk_for(const LoadedObject& target, const ElfSymbol& old_sym, const std::string& name,
                                       x86::RegSet extra, const std::string& hazard, x86::VectorFeatures cpu) {
  ArgumentPassing args = argument_passing(target.symbol_file(), old_sym.value);
  if (!args.registers_only)
    return Error(ErrorKind::unsupported,
                 fmt::format("the replacement of '{}' changes registers the original never touched ({}), and {}; an "
                             "entry thunk preserving them cannot be used because {}",
                             name, x86::describe(extra), hazard, args.why),
                 0,
                 "the target was built with GCC's -fipa-ra (default at -O2), which lets callers keep values in "
                 "those registers across the call; make the replacement touch no more registers than the "
                 "original (no calls), or rebuild the target with -fno-ipa-ra");
  x86::RegSet preserve = extra & ~x86::RegSet{1};
  if (args.returns_in_rdx) preserve &= ~x86::RegSet{1u << 2};
  if (args.returns_in_xmm) preserve &= ~x86::RegSet{3u << 16};
  if (x86::RegSet upper = preserve & (x86::reg_bit(32) | x86::reg_bit(33)); args.returns_in_xmm && upper && cpu.avx)
    return Error(ErrorKind::unsupported,
                 fmt::format("the replacement of '{}' changes {}, which the original never touched, and {}; an entry "
                             "thunk cannot preserve it because the low half of that register carries the return value",
                             name, x86::describe(upper), hazard),
                 0, "make the replacement leave the upper halves of ymm0/ymm1 alone, or rebuild the target with -fno-ipa-ra");
  return x86::thunk_regs(preserve, cpu);
}

// The functions of the target object with their code, decoded on demand by the register check.
struct TargetCode {
  struct Func {
    const ElfSymbol* sym;
    std::vector<uint8_t> bytes;
    x86::AvxEncoding avx = x86::AvxEncoding::none;  // its widest vector encoding
  };
  std::vector<Func> funcs;
  std::set<uint64_t> starts;
};

const TargetCode& target_code(LoadedObject& target, std::optional<TargetCode>& cache) {
  if (cache) return *cache;
  cache.emplace();
  for (const auto& s : target.symbol_file().symbols()) {
    if (!s.defined() || s.type != STT_FUNC || s.size == 0) continue;
    auto bytes = target.elf->read_vaddr(s.value, s.size);
    if (!bytes) continue;
    auto avx = x86::avx_encoding(*bytes, s.value);
    cache->funcs.push_back({&s, std::move(*bytes), avx});
    cache->starts.insert(s.value);
  }
  return *cache;
}

// GCC's -fipa-ra: callers of a function that clobbers few registers may keep values in the
// others across the call. A replacement that clobbers more needs every direct caller shown not to
// rely on them (src/x86/register_use.h); where that cannot be shown, the replacement is called
// through an entry thunk that preserves them (src/x86/entry_thunk.h), if the function takes all
// its arguments in registers. Returns the registers the thunk must preserve (none: no thunk).
Result<x86::ThunkRegs> check_register_assumptions(LoadedObject& target, const ElfSymbol& old_sym,
                                                  std::span<const uint8_t> old_code, std::span<const uint8_t> new_code,
                                                  const std::string& name, std::optional<TargetCode>& cache) {
  using namespace x86;
  RegSet extra = clobbered_by(new_code, 0) & ~clobbered_by(old_code, old_sym.value) & ~RegSet{1};  // rax returns
  if (extra == 0) return ThunkRegs{};
  // Only GCC at -O2 and above does this, and only for callers compiled in the same unit as the
  // callee (or in one link-time-optimised unit); the DWARF of the target says which.
  CompileUnits units(target.symbol_file());
  auto producer = units.producer_of(old_sym.value);
  if (!producer_may_use_ipa_ra(producer)) return ThunkRegs{};
  std::optional<uint64_t> unit = producer_is_lto(producer) ? std::nullopt : units.unit_of(old_sym.value);
  const TargetCode& code = target_code(target, cache);
  // Callers keep values only in the vector state their unit's instructions reach
  // (x86::avx_encoding): none beyond the low halves of xmm0-15 in baseline x86-64 code (whose
  // thunks are as before), ymm upper halves in AVX/AVX2 code (saved as ymm even on an AVX-512
  // machine: nothing there reads bits 511:256), everything in AVX-512 code.
  AvxEncoding unit_avx = AvxEncoding::none;
  for (const auto& f : code.funcs) {
    auto u = unit ? units.unit_of(f.sym->value) : std::nullopt;
    if (!unit || !u || *u == *unit) unit_avx = std::max(unit_avx, f.avx);
  }
  VectorFeatures cpu = host_vector_features();
  if (unit_avx == AvxEncoding::none) {
    extra &= ~kWideVectorState;
    cpu = {};
  } else if (unit_avx == AvxEncoding::vex) {
    extra &= ~(kVectorHigh16 | kMaskRegs);
    cpu.avx512 = cpu.avx512bw = false;
  }
  if (extra == 0) return ThunkRegs{};
  auto known = [&](uint64_t a) { return code.starts.count(a) != 0; };
  // Later calls to functions of the target read what those functions read (decoded); a callee
  // of another unit makes the caller assume the ABI. The replaced function itself is unknown:
  // its callers' view of it is what is being checked.
  std::map<uint64_t, const TargetCode::Func*> by_addr;
  for (const auto& f : code.funcs) by_addr.emplace(f.sym->value, &f);
  FindCallee find_callee = [&](uint64_t addr) -> std::optional<Callee> {
    auto it = by_addr.find(addr);
    if (addr == old_sym.value || it == by_addr.end()) return std::nullopt;
    auto callee_unit = units.unit_of(addr);
    bool same = !unit || !callee_unit || *callee_unit == *unit;
    return Callee{it->second->bytes, addr, same};
  };
  std::string hazard;
  for (const auto& f : code.funcs) {
    if (unit) {
      auto caller_unit = units.unit_of(f.sym->value);
      if (caller_unit && *caller_unit != *unit) continue;  // another translation unit: no IPA-RA
    }
    auto sites = call_sites(f.bytes, f.sym->value, old_sym.value);
    if (sites.returns.empty() && !sites.tail_jumps) continue;
    bool callers_assume_all = calls_unknown(f.bytes, f.sym->value, known);
    if (sites.tail_jumps && f.sym->value != old_sym.value && !callers_assume_all) {
      hazard = fmt::format("'{}' jumps to it as a tail call", f.sym->name);
      break;
    }
    for (uint64_t ret : sites.returns) {
      auto r = read_after_call(f.bytes, f.sym->value, ret, extra, callers_assume_all, find_callee);
      if (r.read)
        hazard = fmt::format("'{}' reads {} after calling it (at {}+{:#x})", f.sym->name, describe(r.read), f.sym->name,
                             r.at - f.sym->value);
      else if (r.unsure)
        hazard = fmt::format("livegraft cannot prove that '{}' does not rely on them after calling it (at {}+{:#x})",
                             f.sym->name, f.sym->name, r.at - f.sym->value);
      if (!hazard.empty()) break;
    }
    if (!hazard.empty()) break;
  }
  if (hazard.empty()) return ThunkRegs{};
  return entry_thunk_for(target, old_sym, name, extra, hazard, cpu);
}

// The symbol of a replaced function: from the object's .symtab or its separate debug file (whose
// addresses are the object's: the code is then read from the object itself). When a stripped
// object has no debug file, the error says where it was looked for.
Result<ElfSymbol> find_old_symbol(const LoadedObject& target, const std::string& name, uint64_t sympos) {
  auto sym = target.symbol_file().find_symbol(name, sympos);
  if (sym || sym.error().kind != ErrorKind::not_found || target.symbol_file().has_symtab()) {
    if (!sym && target.debug)
      return std::move(sym).error().context(fmt::format("{} ({} debug file of {})", target.debug_path,
                                                        target.debug_origin, target.display_path()));
    return sym;
  }
  std::string tried;
  for (const auto& t : target.debug_tried) tried += "\n    " + t;
  return Error(ErrorKind::not_found,
               fmt::format("'{}' is not an exported symbol of {}, which is stripped (no .symtab), and no separate "
                           "debug file was found{}{}",
                           name, target.display_path(), tried.empty() ? "" : "; looked at:", tried),
               0,
               "install its debug symbols (the -dbgsym package, under /usr/lib/debug/.build-id/), set DEBUGINFOD_URLS, "
               "or pass the debug file with `--symbols FILE`");
}

// Resolves, checks and plans one replaced function; [new_code] is the replacement's code.
Result<PlannedFunc> plan_func(pid_t pid, LoadedObject& target, const PatchFunc& f, std::span<const uint8_t> new_code,
                              const std::vector<RemoteAddr>& redirected, std::optional<TargetCode>& code_cache) {
  const ElfFile& elf = *target.elf;
  LG_TRY(auto sym, find_old_symbol(target, f.old_name, f.old_sympos));
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
  LG_TRY(p.preserve, check_register_assumptions(target, sym, file_bytes, new_code, f.old_name, code_cache));
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
  for (const auto& s : target.symbol_file().symbols())
    if (s.defined() && s.type == STT_FUNC && s.size && is_piece_of(s.name, f.old_name))
      p.extra_ranges.push_back({target.runtime(s.value), target.runtime(s.value + s.size)});
  return p;
}

// The patch's target object, opened with its symbols (its .symtab or its debug file). By name;
// when several mapped objects answer to the name (a library replaced on disk and mapped again
// by a later dlopen), the one with the patch's build-id.
Result<LoadedObject*> find_target_object(ProcessImage& image, const PatchTargetObject& obj, const PlanOptions& options) {
  LoadedObject* target = nullptr;
  if (obj.name) {
    LG_TRY(target, image.find(*obj.name));
    auto file_name = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
    if (obj.build_id && image.open(*target).ok() && target->elf->build_id() != obj.build_id) {
      for (auto& o : image.objects()) {
        if (&o == target || file_name(o.path) != file_name(target->path) || !image.open(o).ok()) continue;
        if (o.elf->build_id() == obj.build_id) {
          target = &o;
          break;
        }
      }
    }
  } else {
    LG_TRY(target, image.main_executable());
  }
  if (!options.symbols_file.empty()) {
    DebugFileOptions d;
    d.sysroot = fmt::format("/proc/{}/root", image.pid());
    d.roots = default_debug_roots(d.sysroot);
    d.explicit_file = options.symbols_file;
    image.set_debug_options(std::move(d));
  }
  LG_TRY_VOID(image.open_symbols(*target));
  return target;
}

// -fPIE patch code reaches data it does not define PC-relatively (R_X86_64_PC32), counting on a
// copy relocation no linker made (src/x86/data_reference.h). References to the target object's
// own symbols reach (the patch is placed near it); the others may lie out of +-2 GiB: the loader
// rewrites the lea/mov loads among them, and anything else is refused here, before the process
// is touched. Calls and jumps (e8/e9) go through veneers instead.
Result<void> plan_data_references(const ElfFile& patch_elf, ApplyPlan& plan) {
  const auto& secs = patch_elf.sections();
  const auto& syms = patch_elf.symbols();
  for (const auto& rs : secs) {
    if (rs.type != SHT_RELA || rs.info == 0 || rs.info >= secs.size()) continue;
    const ElfSection& target = secs[rs.info];
    if (!(target.flags & SHF_ALLOC) || !(target.flags & SHF_EXECINSTR) || target.type == SHT_NOBITS) continue;
    LG_TRY(auto code, patch_elf.section_data(target.index));
    std::vector<uint64_t> starts;
    for (const auto& s : syms)
      if (s.defined() && s.shndx == target.index && (s.type == STT_FUNC || s.type == STT_SECTION)) starts.push_back(s.value);
    Elf_Scn* scn = elf_getscn(patch_elf.raw(), rs.index);
    Elf_Data* data = scn ? elf_getdata(scn, nullptr) : nullptr;
    size_t n = data && rs.entsize ? rs.size / rs.entsize : 0;
    for (size_t i = 0; i < n; ++i) {
      GElf_Rela rela;
      if (!gelf_getrela(data, static_cast<int>(i), &rela) || GELF_R_TYPE(rela.r_info) != R_X86_64_PC32) continue;
      size_t si = GELF_R_SYM(rela.r_info);
      if (si == 0 || si >= syms.size() || syms[si].defined()) continue;
      const std::string& name = syms[si].name;
      if (auto it = plan.symbols.find(name); it != plan.symbols.end() && it->get<uint64_t>() != 0) continue;  // in the target
      uint64_t off = rela.r_offset;
      if (off >= 1 && off <= code.size() && (code[off - 1] == 0xe8 || code[off - 1] == 0xe9)) continue;  // a veneer
      std::string why;
      auto ref = x86::classify_data_reference(code, starts, off, rela.r_addend, why);
      if (!ref)
        return Error(ErrorKind::unsupported,
                     fmt::format("patch '{}' reaches '{}', which the target object does not define, PC-relatively "
                                 "(R_X86_64_PC32 in {}+{:#x}, {}): it may lie more than 2 GiB away, and livegraft "
                                 "cannot rewrite branches or stack-pointer instructions that use such data",
                                 plan.patch.name, name, target.name, off, why),
                     0,
                     "compile the patch with -fPIC (or -mno-direct-extern-access), which reaches other objects' "
                     "data through the GOT");
      ref->section = static_cast<uint32_t>(target.index);
      plan.data_refs.push_back(*ref);
    }
  }
  return {};
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

protocol::LoadRequest ApplyPlan::load_request(const std::string& absolute_path) const {
  protocol::LoadRequest r;
  r.path = absolute_path;
  r.object_name = object_name;
  r.object = object_range;
  for (const auto& f : funcs) {
    protocol::FuncRequest fr;
    fr.old_name = f.old_name;
    fr.old_sympos = f.old_sympos;
    fr.old_addr = f.addr.value;
    fr.jump_addr = f.jump_addr.value;
    std::copy_n(f.orig_bytes.begin(), std::min(f.orig_bytes.size(), fr.orig_bytes.size()), fr.orig_bytes.begin());
    fr.preserve = f.preserve.regs;
    fr.preserve_vec = f.preserve.vec;
    r.funcs.push_back(std::move(fr));
  }
  for (auto it = symbols.begin(); it != symbols.end(); ++it)
    if (it->is_number_integer()) r.symbols[it.key()] = it->get<uint64_t>();
  r.dlsym_names.insert(dlsym.begin(), dlsym.end());
  r.data_refs = data_refs;
  return r;
}

Result<ApplyPlan> plan_apply(pid_t pid, const std::string& patch_path, const std::vector<RemoteAddr>& redirected,
                             const PlanOptions& options) {
  ApplyPlan plan;
  // 1. The file is opened and read once; everything below, and the agent, use these bytes.
  LG_TRY(auto file, open_patch_file(patch_path));
  LG_TRY(plan.patch, read_patch_object(file.bytes, patch_path));
  if (plan.patch.objects.size() != 1)
    return make_error(ErrorKind::unsupported, "{}: a patch must target exactly one object in layout version 1",
                      patch_path);
  const PatchTargetObject& obj = plan.patch.objects[0];

  LG_TRY(auto image, ProcessImage::read(pid));
  LG_TRY(LoadedObject* target, find_target_object(image, obj, options));
  plan.object_name = obj.name.value_or("");
  plan.object_path = target->display_path();
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
    // Bound by position (livegraft_sym, layout version 2): one definition among several of a
    // name, chosen in the table old_sympos counts in (the same as for replaced functions).
    if (const PatchSym* b = obj.sym(u.name)) {
      LG_TRY_VOID(image.open_symbols(*target));
      auto sym = find_old_symbol(*target, b->old_name, b->old_sympos);
      if (!sym)
        return std::move(sym).error().context(fmt::format("patch '{}' binds '{}' to definition {} of '{}'",
                                                          plan.patch.name, u.name, b->old_sympos, b->old_name));
      if (sym->type == STT_TLS || sym->type == STT_GNU_IFUNC)
        return make_error(ErrorKind::unsupported, "patch '{}' binds '{}' to '{}' of {}, which is {}: not supported in patches",
                          plan.patch.name, u.name, b->old_name, target->path,
                          sym->type == STT_TLS ? "thread-local" : "an IFUNC");
      plan.symbols[u.name] = target->runtime(sym->value).value;
      continue;
    }
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
  // The external-data references are decoded from the same bytes (already bounds-checked by
  // read_patch_object above), through libelf.
  LG_TRY(auto patch_elf, ElfFile::from_bytes(file.bytes, patch_path));
  LG_TRY_VOID(plan_data_references(patch_elf, plan));
  LG_TRY(plan.patch_fd, sealed_copy(file.bytes, "livegraft-patch:" + plan.patch.name));
  return plan;
}

}  // namespace lg
