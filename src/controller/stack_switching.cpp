#include "controller/stack_switching.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "agent/safepoint.h"  // the table's layout (shared with the agent)

namespace lg {

namespace {

// Primitives that save one stack's registers and continue on another. libc's ucontext family;
// boost.context (fcontext, used by boost.coroutine2, boost.fiber, folly fibers); Tencent libco;
// libaco; GNU Pth; minicoro. (getcontext alone switches nothing: setcontext resumes.)
constexpr const char* kPrimitives[] = {
    "swapcontext", "makecontext", "setcontext",                  // glibc ucontext(3)
    "jump_fcontext", "make_fcontext", "ontop_fcontext",          // boost.context
    "coctx_swap",                                                // libco
    "acosw", "aco_resume",                                       // libaco
    "pth_uctx_switch", "pth_uctx_make",                          // GNU Pth
    "mco_resume", "mco_yield",                                   // minicoro
};

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_libc(const std::string& base) { return base.rfind("libc.so", 0) == 0 || base.rfind("libc-", 0) == 0; }
bool is_agent(const std::string& base) { return base == "liblivegraft-agent.so"; }

bool is_primitive(const std::string& name) {
  return std::any_of(std::begin(kPrimitives), std::end(kPrimitives), [&](const char* p) { return name == p; });
}

Result<void> peek(pid_t pid, RemoteAddr addr, void* out, size_t len) {
  iovec local{out, len};
  iovec remote{reinterpret_cast<void*>(addr.value), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n < 0) {
    if (errno == ESRCH) return make_error(ErrorKind::thread_died, "process {} exited", pid);
    return make_errno_error(ErrorKind::io, "reading {} bytes at {} in process {}", len, addr, pid);
  }
  if (static_cast<size_t>(n) != len) return make_error(ErrorKind::io, "short read of {} bytes at {} in process {}", len, addr, pid);
  return ok_result();
}

}  // namespace

Result<std::vector<StackSwitchingUse>> find_stack_switching(ProcessImage& image) {
  std::vector<StackSwitchingUse> uses;
  for (auto& o : image.objects()) {
    std::string base = basename_of(o.path);
    if (is_agent(base)) continue;
    if (!image.open(o).ok() || !o.elf) continue;  // not an ELF file (a data mapping): no code of ours to judge
    auto scan = [&](const std::vector<ElfSymbol>& table) {
      for (const auto& s : table) {
        if (s.name.empty() || !is_primitive(s.name)) continue;
        if (s.type == STT_SECTION || s.type == STT_FILE) continue;
        bool defines = s.defined();
        if (defines && is_libc(base)) continue;
        bool dup = std::any_of(uses.begin(), uses.end(), [&](const StackSwitchingUse& u) {
          return u.object == o.path && u.symbol == s.name;
        });
        if (!dup) uses.push_back({o.path, s.name, defines});
      }
    };
    scan(o.elf->dynamic_symbols());
    if (o.elf->has_symtab()) scan(o.elf->symbols());
  }
  return uses;
}

Result<std::optional<ContextTableRef>> find_context_table(pid_t pid, ProcessImage& image) {
  for (auto& o : image.objects()) {
    if (!is_agent(basename_of(o.path))) continue;
    LG_TRY(auto sym, image.lookup_in(o, "livegraft_context_table"));
    if (!sym) return std::optional<ContextTableRef>{};  // an agent older than the table
    agent::ContextTable t{};
    LG_TRY_VOID(peek(pid, sym->addr, &t, sizeof t));
    if (t.magic != agent::kContextTableMagic || t.version != agent::kContextTableVersion ||
        t.slot_size != sizeof(agent::ContextSlot) || t.capacity > 1u << 20)
      return make_error(ErrorKind::agent, "the agent's context table in process {} has an unknown layout (version {})", pid,
                        t.version);
    return std::optional<ContextTableRef>(ContextTableRef{sym->addr, RemoteAddr(t.slots), t.capacity, t.declared != 0, RemoteAddr(t.start_context)});
  }
  return std::optional<ContextTableRef>{};
}

Result<std::optional<ContextTableRef>> check_stack_switching(pid_t pid, bool allowed_by_user) {
  LG_TRY(auto image, ProcessImage::read(pid));
  LG_TRY(auto table, find_context_table(pid, image));
  if (table && table->declared) return table;  // the scheduler declares its contexts: check them
  if (allowed_by_user) return std::optional<ContextTableRef>{};
  LG_TRY(auto uses, find_stack_switching(image));
  if (uses.empty()) return std::optional<ContextTableRef>{};
  std::string what;
  for (size_t i = 0; i < uses.size() && i < 4; ++i)
    what += fmt::format("{}{} {} {}", i ? "; " : "", uses[i].object, uses[i].defines ? "defines" : "imports", uses[i].symbol);
  if (uses.size() > 4) what += fmt::format("; and {} more", uses.size() - 4);
  // OpenSSL's libcrypto imports makecontext/setcontext for its ASYNC jobs, so every program
  // linked with OpenSSL 3 is here although few use those jobs; and no scheduler of the program's
  // can declare OpenSSL's contexts. The hint says what the user vouches for.
  const bool only_openssl = std::all_of(uses.begin(), uses.end(), [](const StackSwitchingUse& u) {
    return basename_of(u.object).rfind("libcrypto.so", 0) == 0;
  });
  if (only_openssl)
    return Error(ErrorKind::unsafe,
                 fmt::format("process {} can switch stacks in user space ({}): OpenSSL runs its ASYNC jobs on stacks "
                             "of their own, and a job suspended inside a function the patch changes could not be seen",
                             pid, what),
                 0,
                 fmt::format("{} is OpenSSL: it switches stacks only for ASYNC jobs (SSL_MODE_ASYNC, ASYNC_start_job(), "
                             "an asynchronous engine); if the program uses none, pass --allow-stack-switching "
                             "(docs/consistency.md)",
                             basename_of(uses.front().object)));
  return Error(ErrorKind::unsafe,
               fmt::format("process {} can switch stacks in user space ({}): a suspended coroutine's frames lie on a "
                           "stack no thread points to, so livegraft cannot tell whether one is inside a function the "
                           "patch changes",
                           pid, what),
               0,
               "make the program's scheduler declare its suspended contexts (livegraft_coroutines_declare() and "
               "livegraft_swapcontext(), include/livegraft/safepoint.h), or, if you know no coroutine can be "
               "suspended inside an affected function, pass --allow-stack-switching (docs/consistency.md)");
}

Result<std::vector<SuspendedContext>> read_suspended_contexts(pid_t pid, const ContextTableRef& table) {
  agent::ContextTable t{};
  LG_TRY_VOID(peek(pid, table.header, &t, sizeof t));
  uint64_t overflow = t.overflow.load();
  if (overflow > 0)
    return make_error(ErrorKind::unsafe,
                      "{} suspended context(s) of process {} are not recorded (the agent's table of {} is full): they "
                      "cannot be checked",
                      overflow, pid, table.capacity);
  uint64_t n = std::min<uint64_t>(t.high_water.load(), table.capacity);
  std::vector<agent::ContextSlot> slots(n);
  if (n) LG_TRY_VOID(peek(pid, table.slots, slots.data(), n * sizeof(agent::ContextSlot)));
  std::vector<SuspendedContext> out;
  for (const auto& s : slots) {
    // A slot being saved belongs to a thread still running on that stack: its own unwind covers it.
    if (s.state.load() != agent::kSlotSuspended) continue;
    SuspendedContext c;
    c.key = s.key;
    c.tid = static_cast<pid_t>(s.tid);
    c.regs.rip = s.rip;
    c.regs.rsp = s.rsp;
    c.regs.rbp = s.rbp;
    c.regs.rbx = s.rbx;
    c.regs.r12 = s.r12;
    c.regs.r13 = s.r13;
    c.regs.r14 = s.r14;
    c.regs.r15 = s.r15;
    out.push_back(c);
  }
  return out;
}

Result<std::vector<Blocker>> context_blockers(pid_t pid, const ContextTableRef& table, Unwinder& unwinder,
                                              const std::vector<RemoteRange>& affected, std::optional<pid_t> only_tid) {
  std::vector<Blocker> out;
  if (table.start_context.value) unwinder.add_outermost_return(table.start_context);
  auto contexts = read_suspended_contexts(pid, table);
  if (!contexts) {
    if (contexts.error().kind != ErrorKind::unsafe) return std::move(contexts).error();
    out.push_back({only_tid.value_or(pid), contexts.error().message, {}});
    return out;
  }
  for (const auto& c : *contexts) {
    if (only_tid && c.tid != *only_tid) continue;
    LG_TRY(auto trace, unwinder.unwind(c.regs));
    std::vector<std::string> stack;
    for (const auto& f : trace.frames) stack.push_back(unwinder.symbolize(f.pc));
    if (!trace.complete) {
      out.push_back({c.tid, fmt::format("its suspended context {:#x} cannot be unwound reliably: {}", c.key, trace.stop_reason), stack});
      continue;
    }
    for (const auto& f : trace.frames) {
      auto hit = std::find_if(affected.begin(), affected.end(), [&](const RemoteRange& r) { return r.contains(f.lookup_pc); });
      if (hit != affected.end()) {
        out.push_back({c.tid, fmt::format("its suspended context {:#x} has {} on its stack", c.key, unwinder.symbolize(f.lookup_pc)), stack});
        break;
      }
    }
  }
  return out;
}

void register_coroutine_stack_ends(pid_t pid, Unwinder& unwinder) {
  auto image = ProcessImage::read(pid);
  if (!image) return;
  auto table = find_context_table(pid, *image);
  if (table && *table && (*table)->start_context.value) unwinder.add_outermost_return((*table)->start_context);
}

Result<OperationOptions> with_stack_switching_check(pid_t pid, const OperationOptions& options) {
  OperationOptions out = options;
  if (options.model == ConsistencyModel::immediate) return out;  // no consistency: nothing to check
  LG_TRY(auto table, check_stack_switching(pid, options.allow_stack_switching));
  if (table)
    out.context_check = [pid, t = *table](Unwinder& unwinder, const std::vector<RemoteRange>& affected, std::optional<pid_t> tid) {
      // Threads running a coroutine unwind to the same trampoline (registered before they are
      // checked again: a thread found unexplained once is retried).
      if (t.start_context.value) unwinder.add_outermost_return(t.start_context);
      return context_blockers(pid, t, unwinder, affected, tid);
    };
  return out;
}

std::optional<std::string> off_own_stack(pid_t pid, pid_t tid, uint64_t fs_base, const StackTrace& trace, Unwinder& unwinder) {
  if (!trace.complete || trace.frames.empty()) return std::nullopt;  // pending for that already
  const RemoteAddr end = trace.frames.back().cfa;
  auto on = unwinder.mapping_of(end);
  if (tid == pid) {
    if (on && on->path == "[stack]") return std::nullopt;
  } else if (auto own = unwinder.mapping_of(RemoteAddr(fs_base)); own && on && own->range.lo == on->range.lo) {
    return std::nullopt;
  }
  return fmt::format("its stack ends at {:#x}{}, not on its own stack: the program switches stacks by itself (a coroutine or fiber "
                     "livegraft was not told about), and what the thread's own stack holds is not known (declare the contexts "
                     "with livegraft_coroutines_declare, or pass --allow-stack-switching)",
                     end.value, on ? fmt::format(" (in {:#x}-{:#x} {})", on->range.lo.value, on->range.hi.value, on->path) : std::string());
}

}  // namespace lg
