#include "unwind/unwinder.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>
#include <optional>

#include "common/proc_maps.h"
#include "unwind/cfi_object.h"
#include "unwind/dwarf_expr.h"
#include "unwind/proc_memory.h"

namespace lg {

namespace {

constexpr int kRa = reg_index(DwarfReg::rip);
constexpr int kSp = reg_index(DwarfReg::rsp);
constexpr uint64_t kMaxEhFrameSize = 64 << 20;

std::string describe_mapping(const Mapping& m) {
  return fmt::format("{:#x}-{:#x} {}{}{} {}", m.range.lo.value, m.range.hi.value, m.read ? 'r' : '-',
                     m.write ? 'w' : '-', m.exec ? 'x' : '-', m.path.empty() ? "[anonymous]" : m.path);
}

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "/usr/lib/x.so (deleted)": the file was replaced on disk; only map_files still reaches it.
std::string strip_deleted(const std::string& path) {
  static const std::string suffix = " (deleted)";
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return path.substr(0, path.size() - suffix.size());
  return path;
}

}  // namespace

struct Unwinder::Impl {
  explicit Impl(pid_t p, ProcMemory m) : pid(p), mem(std::move(m)), stack_pages(mem) {}

  // One line of /proc/PID/maps, with its ELF object resolved on first use.
  struct Module {
    Mapping map;
    bool resolved = false;
    CfiObject* obj = nullptr;  // owned by files_ / vdso_
    uint64_t bias = 0;
    std::string error;  // why obj is null after resolution
  };
  struct Region {
    RemoteRange code;
    std::string name;
    std::unique_ptr<CfiObject> obj;
    std::string error;
  };
  // Where a pc's code comes from.
  struct Location {
    CfiObject* obj = nullptr;
    uint64_t bias = 0;
    std::string where;  // for messages
  };

  pid_t pid;
  ProcMemory mem;
  PageCache stack_pages;  // over mem, for one walk
  std::vector<Module> modules;  // sorted by address, as the kernel lists them
  std::map<std::pair<uint64_t, uint64_t>, std::unique_ptr<CfiObject>> files;  // by (st_dev, st_ino)
  std::map<std::pair<uint64_t, uint64_t>, std::string> file_errors;
  std::unique_ptr<CfiObject> vdso;
  RemoteRange vdso_range;
  std::vector<Region> regions;
  std::vector<std::pair<RemoteRange, std::string>> region_symbols;  // add_code_symbol
  std::set<uint64_t> outermost_returns;  // add_outermost_return()

  Result<void> load_maps() {
    LG_TRY(auto maps, read_proc_maps(pid));
    modules.clear();
    modules.reserve(maps.size());
    for (auto& m : maps) modules.push_back(Module{std::move(m)});
    return {};
  }

  void resolve(Module& mod) {
    mod.resolved = true;
    const Mapping& m = mod.map;
    if (m.path == "[vdso]") {
      resolve_vdso(mod);
      return;
    }
    if (!m.is_file()) {
      mod.error = fmt::format("anonymous executable mapping {} has no CFI (JIT code, or patch code not registered "
                              "with the unwinder)",
                              describe_mapping(m));
      return;
    }
    // map_files reaches the mapped file itself, even when it was deleted or replaced on disk.
    std::string map_file = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.lo.value, m.range.hi.value);
    std::string path = strip_deleted(m.path);
    struct stat st;
    std::string open_path = map_file;
    if (::stat(map_file.c_str(), &st) != 0) {
      open_path = path;
      if (::stat(path.c_str(), &st) != 0 || st.st_ino != m.inode) {
        mod.error = fmt::format("cannot open the file of mapping {}", describe_mapping(m));
        return;
      }
    }
    auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
    auto it = files.find(key);
    if (it == files.end()) {
      if (auto e = file_errors.find(key); e != file_errors.end()) {
        mod.error = e->second;
        return;
      }
      auto obj = CfiObject::open_file(open_path, path);
      if (!obj.ok()) {
        mod.error = fmt::format("mapping {}: {}", describe_mapping(m), obj.error().message);
        file_errors.emplace(key, mod.error);
        return;
      }
      it = files.emplace(key, std::move(obj).value()).first;
    }
    attach(mod, it->second.get());
  }

  void resolve_vdso(Module& mod) {
    const Mapping& m = mod.map;
    if (!vdso || vdso_range.lo != m.range.lo || vdso_range.hi != m.range.hi) {
      vdso.reset();
      std::vector<uint8_t> bytes(m.range.size());
      auto r = mem.read(m.range.lo, bytes);
      if (!r.ok()) {
        mod.error = fmt::format("reading the vDSO: {}", r.error().message);
        return;
      }
      auto obj = CfiObject::from_image(std::move(bytes), "[vdso]");
      if (!obj.ok()) {
        mod.error = obj.error().message;
        return;
      }
      vdso = std::move(obj).value();
      vdso_range = m.range;
    }
    attach(mod, vdso.get());
  }

  void attach(Module& mod, CfiObject* obj) {
    auto bias = obj->bias_for(mod.map.range.lo.value, mod.map.offset);
    if (!bias.ok()) {
      mod.error = bias.error().message;
      return;
    }
    if (!obj->has_cfi()) {
      mod.error = fmt::format("{} has no .eh_frame or .debug_frame", obj->name());
      return;
    }
    mod.obj = obj;
    mod.bias = *bias;
  }

  Module* find_module(uint64_t pc) {
    auto it = std::upper_bound(modules.begin(), modules.end(), pc,
                               [](uint64_t v, const Module& m) { return v < m.map.range.lo.value; });
    if (it == modules.begin()) return nullptr;
    --it;
    return it->map.range.contains(RemoteAddr(pc)) ? &*it : nullptr;
  }

  // Where the code at [pc] comes from; nullopt with [why] when it cannot be explained.
  // [missed]: the pc is in no executable mapping we know of (the maps may be stale).
  std::optional<Location> locate(uint64_t pc, std::string& why, bool* missed = nullptr) {
    for (Region& r : regions) {
      if (!r.code.contains(RemoteAddr(pc))) continue;
      if (!r.obj) {
        why = fmt::format("pc {:#x} is in patch code {}, whose CFI is unusable: {}", pc, r.name, r.error);
        return std::nullopt;
      }
      return Location{r.obj.get(), 0, r.name};
    }
    Module* mod = find_module(pc);
    if (!mod || !mod->map.exec || (mod->map.path.empty() && mod->map.inode == 0)) {
      if (missed) *missed = true;
    }
    if (!mod) {
      why = fmt::format("pc {:#x} is in no mapping of process {}", pc, pid);
      return std::nullopt;
    }
    if (!mod->map.exec) {
      why = fmt::format("pc {:#x} is in non-executable mapping {}", pc, describe_mapping(mod->map));
      return std::nullopt;
    }
    if (!mod->resolved) resolve(*mod);
    if (!mod->obj) {
      why = fmt::format("pc {:#x}: {}", pc, mod->error);
      return std::nullopt;
    }
    return Location{mod->obj, mod->bias, mod->obj->name()};
  }

  Result<StackTrace> unwind(const user_regs_struct& uregs, size_t max_frames);
};

Result<StackTrace> Unwinder::Impl::unwind(const user_regs_struct& uregs, size_t max_frames) {
  StackTrace trace;
  stack_pages.clear();
  bool refreshed = false;
  RegisterSet regs = RegisterSet::from_user_regs(uregs);
  bool exact_pc = true;        // the first frame, and a frame interrupted by a signal
  bool interrupted = false;    // the frame below was a signal trampoline
  auto stop = [&](std::string reason) -> Result<StackTrace> {
    trace.complete = false;
    trace.stop_reason = std::move(reason);
    return std::move(trace);
  };
  // Memory errors of a live process make the frame unexplained; a dead process is an error.
  auto failed = [&](Error e, std::string what) -> Result<StackTrace> {
    if (e.kind == ErrorKind::thread_died) return e;
    return stop(fmt::format("{}: {}", what, e.message));
  };

  for (;;) {
    if (trace.frames.size() >= max_frames) return stop(fmt::format("stopped after {} frames (max_frames)", max_frames));
    uint64_t pc = regs.get(kRa);
    Frame frame;
    frame.pc = RemoteAddr(pc);
    frame.signal_frame = interrupted;
    frame.lookup_pc = RemoteAddr(exact_pc ? pc : pc - 1);
    const size_t index = trace.frames.size();

    std::string why;
    bool missed = false;
    auto loc = locate(frame.lookup_pc.value, why, &missed);
    // A pc in no known executable mapping may be code mapped since the last read of the maps
    // (a library dlopen-ed since): read them again, once per walk.
    if (!loc && missed && !refreshed) {
      refreshed = true;
      LG_TRY_VOID(load_maps());
      loc = locate(frame.lookup_pc.value, why, &missed);
    }
    if (!loc) return stop(fmt::format("frame #{}: {}", index, why));
    FramePtr row = loc->obj->frame_at(frame.lookup_pc.value - loc->bias, &why);
    if (!row && index > 0 && outermost_returns.count(pc)) {  // makecontext's trampoline: the stack ends here
      trace.frames.push_back(frame);
      trace.complete = true;
      return trace;
    }
    if (!row)
      return stop(fmt::format("frame #{}: no CFI for pc {:#x} in {}: {}", index, pc, loc->where, why));

    bool signalp = false;
    Dwarf_Addr fde_start = 0, fde_end = 0;
    int ra_reg = dwarf_frame_info(row.get(), &fde_start, &fde_end, &signalp);
    if (ra_reg < 0 || ra_reg >= kDwarfRegCount)
      return stop(fmt::format("frame #{}: CFI for pc {:#x} in {} has return address register {}", index, pc,
                              loc->where, ra_reg));
    frame.signal_trampoline = signalp;
    // A handler "returns" to the signal trampoline's first instruction: that pc is exact. (glibc
    // starts the FDE one byte early, at a nop, for unwinders that always subtract 1.)
    if (signalp && pc - loc->bias >= fde_start && pc - loc->bias < fde_end) frame.lookup_pc = frame.pc;

    Dwarf_Op* ops = nullptr;
    size_t nops = 0;
    if (dwarf_frame_cfa(row.get(), &ops, &nops) != 0 || nops == 0)
      return stop(fmt::format("frame #{}: the CFI for pc {:#x} in {} gives no CFA", index, pc, loc->where));
    auto cfa = evaluate_cfa_rule({ops, nops}, regs, stack_pages);
    if (!cfa.ok())
      return failed(std::move(cfa).error(), fmt::format("frame #{}: CFA at pc {:#x} in {}", index, pc, loc->where));
    frame.cfa = RemoteAddr(*cfa);

    // The stack grows down: each caller's CFA lies above its callee's. Only the kernel's signal
    // frame may break this (a handler running on a sigaltstack above the interrupted stack).
    if (!trace.frames.empty() && !signalp && frame.cfa <= trace.frames.back().cfa)
      return stop(fmt::format("frame #{}: CFA {:#x} at pc {:#x} in {} does not lie above the previous frame's CFA "
                              "{:#x}",
                              index, *cfa, pc, loc->where, trace.frames.back().cfa.value));
    trace.frames.push_back(frame);

    // The caller's registers.
    RegisterSet caller;
    bool outermost = false;
    for (int r = 0; r < kDwarfRegCount; ++r) {
      Dwarf_Op ops_mem[3];
      Dwarf_Op* rops = nullptr;
      size_t rnops = 0;
      if (dwarf_frame_register(row.get(), r, ops_mem, &rops, &rnops) != 0)
        return stop(fmt::format("frame #{}: CFI rule for {} at pc {:#x} in {}: {}", index, dwarf_reg_name(r), pc,
                                loc->where, dwarf_errmsg(-1)));
      if (rnops == 0) {
        if (rops == nullptr) {  // same value: this frame did not change it
          if (regs.has(r)) caller.set(r, regs.get(r));
        } else if (r == ra_reg) {  // undefined return address: the outermost frame (_start, clone3)
          outermost = true;
        }
        continue;
      }
      auto v = evaluate_register_rule({rops, rnops}, regs, *cfa, stack_pages);
      if (!v.ok())
        return failed(std::move(v).error(),
                      fmt::format("frame #{}: restoring {} at pc {:#x} in {}", index, dwarf_reg_name(r), pc, loc->where));
      caller.set(r, *v);
    }
    if (outermost) {
      trace.complete = true;
      return trace;
    }
    // The x86-64 ABI: the caller's stack pointer is the CFA unless the CFI says otherwise.
    if (!caller.has(kSp)) caller.set(kSp, *cfa);
    if (ra_reg != kRa) {
      if (!caller.has(ra_reg))
        return stop(fmt::format("frame #{}: return address register {} not recoverable", index, ra_reg));
      caller.set(kRa, caller.get(ra_reg));
    }
    if (!caller.has(kRa))
      return stop(fmt::format("frame #{}: the CFI for pc {:#x} in {} does not recover the return address", index, pc,
                              loc->where));
    // A zero return address after a frame with CFI is the end of the chain (some thread entry
    // points clear it instead of marking the return address undefined).
    if (caller.get(kRa) == 0) {
      trace.complete = true;
      return trace;
    }
    regs = caller;
    exact_pc = signalp;
    interrupted = signalp;
  }
}

Unwinder::Unwinder(pid_t) {}
Unwinder::~Unwinder() = default;

Result<std::unique_ptr<Unwinder>> Unwinder::create(pid_t pid) {
  LG_TRY(auto mem, ProcMemory::open(pid));
  std::unique_ptr<Unwinder> u(new Unwinder(pid));
  u->impl_ = std::make_unique<Impl>(pid, std::move(mem));
  LG_TRY_VOID(u->impl_->load_maps());
  return u;
}

Result<void> Unwinder::refresh() { return impl_->load_maps(); }

void Unwinder::load_all_cfi() {
  for (auto& m : impl_->modules)
    if (m.map.exec && !m.resolved && (m.map.is_file() || m.map.path == "[vdso]")) impl_->resolve(m);
}

void Unwinder::add_code_region(RemoteRange code, RemoteAddr eh_frame, uint64_t eh_frame_size, std::string name) {
  remove_code_region(code.lo);
  Impl::Region region{code, std::move(name)};
  if (eh_frame_size == 0 || eh_frame_size > kMaxEhFrameSize) {
    region.error = fmt::format("implausible .eh_frame size {}", eh_frame_size);
  } else {
    std::vector<uint8_t> bytes(eh_frame_size);
    auto r = impl_->mem.read(eh_frame, bytes);
    if (!r.ok()) {
      region.error = fmt::format("reading its .eh_frame at {:#x}: {}", eh_frame.value, r.error().message);
    } else {
      auto obj = CfiObject::from_eh_frame(bytes, eh_frame.value, region.name);
      if (obj.ok())
        region.obj = std::move(obj).value();
      else
        region.error = obj.error().message;
    }
  }
  impl_->regions.push_back(std::move(region));
}

void Unwinder::add_outermost_return(RemoteAddr ret) { impl_->outermost_returns.insert(ret.value); }

void Unwinder::add_code_symbol(RemoteRange range, std::string name) {
  impl_->region_symbols.emplace_back(range, std::move(name));
}

void Unwinder::remove_code_region(RemoteAddr code_lo) {
  std::erase_if(impl_->regions, [&](const Impl::Region& r) { return r.code.lo == code_lo; });
}

Result<StackTrace> Unwinder::unwind(const user_regs_struct& regs, size_t max_frames) {
  return impl_->unwind(regs, max_frames);
}

std::optional<Mapping> Unwinder::mapping_of(RemoteAddr addr) {
  for (int pass = 0; pass < 2; ++pass) {
    if (const auto* m = impl_->find_module(addr.value)) return m->map;
    if (pass == 0 && !impl_->load_maps()) return std::nullopt;
  }
  return std::nullopt;
}

std::string Unwinder::symbolize(RemoteAddr pc) {
  for (const Impl::Region& r : impl_->regions) {
    if (!r.code.contains(pc)) continue;
    for (const auto& [range, name] : impl_->region_symbols)
      if (range.contains(pc)) return fmt::format("{}+{:#x} (patch {})", name, pc - range.lo, r.name);
    return fmt::format("{}+{:#x}", r.name, pc - r.code.lo);
  }
  Impl::Module* mod = impl_->find_module(pc.value);
  if (!mod) return fmt::format("{:#x} (no symbol)", pc.value);
  if (!mod->resolved && mod->map.exec) impl_->resolve(*mod);
  if (!mod->obj) {
    if (mod->map.path.empty()) return fmt::format("{:#x} (no symbol)", pc.value);
    return fmt::format("{:#x} ({})", pc.value, basename_of(mod->map.path));
  }
  auto sym = mod->obj->symbol_at(pc.value - mod->bias);
  std::string base = basename_of(mod->obj->name());
  if (!sym) return fmt::format("{:#x} ({}+{:#x})", pc.value, base, pc.value - mod->bias);
  return fmt::format("{}+{:#x} ({})", sym->name, sym->offset, base);
}

}  // namespace lg
