#include "builder/emit.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "builder/resolve.h"
#include "common/scope_guard.h"
#include "livegraft/patch.h"

namespace lg::builder {

std::string sanitize_patch_name(const std::string& raw) {
  std::string out;
  for (char c : raw) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    out += ok ? c : '-';
    if (out.size() == 64) break;
  }
  return out.empty() ? "patch" : out;
}

namespace {

// The output file, assembled in memory and then written with libelf.
struct OutSection {
  std::string name;
  uint32_t type = SHT_PROGBITS;
  uint64_t flags = 0, align = 1, entsize = 0, size = 0;
  uint32_t link = 0, info = 0;
  std::vector<uint8_t> data;
  std::vector<Elf64_Rela> relas;  // symbol indices into the output symtab, set at the end
  std::vector<std::string> rela_comments;
  size_t symbol = 0;              // its section symbol in the output
};

struct PendingRela {
  size_t section;   // output section
  uint64_t offset;
  uint32_t type;
  int64_t addend;
  size_t out_symbol;  // output symbol index
};

class Writer {
 public:
  size_t add_section(OutSection s) {
    sections_.push_back(std::move(s));
    return sections_.size();  // 1-based ELF index: index 0 is the null section
  }
  OutSection& section(size_t index) { return sections_[index - 1]; }

  size_t add_symbol(const std::string& name, uint8_t bind, uint8_t type, uint16_t shndx, uint64_t value,
                    uint64_t size, uint8_t other = STV_DEFAULT) {
    Elf64_Sym s{};
    s.st_name = add_string(strtab_, name);
    s.st_info = ELF64_ST_INFO(bind, type);
    s.st_other = other;
    s.st_shndx = shndx;
    s.st_value = value;
    s.st_size = size;
    (bind == STB_LOCAL ? locals_ : globals_).push_back(s);
    return (bind == STB_LOCAL ? 0 : kGlobalTag) | ((bind == STB_LOCAL ? locals_ : globals_).size() - 1);
  }

  void add_rela(size_t section, uint64_t offset, uint32_t type, size_t symbol, int64_t addend) {
    relas_.push_back({section, offset, type, addend, symbol});
  }

  Result<void> write(const std::string& path);

 private:
  static constexpr size_t kGlobalTag = size_t(1) << 62;
  static uint32_t add_string(std::vector<char>& table, const std::string& s) {
    if (table.empty()) table.push_back('\0');
    if (s.empty()) return 0;
    uint32_t at = static_cast<uint32_t>(table.size());
    table.insert(table.end(), s.begin(), s.end());
    table.push_back('\0');
    return at;
  }

  std::vector<OutSection> sections_;
  std::vector<Elf64_Sym> locals_{Elf64_Sym{}}, globals_;
  std::vector<char> strtab_;
  std::vector<PendingRela> relas_;
};

Result<void> Writer::write(const std::string& path) {
  // Final symbol indices: locals first (sh_info = first global).
  auto final_index = [&](size_t tagged) {
    return (tagged & kGlobalTag) ? locals_.size() + (tagged & ~kGlobalTag) : tagged;
  };
  // RELA sections, one per section with relocations.
  std::map<size_t, std::vector<Elf64_Rela>> by_section;
  for (const PendingRela& p : relas_) {
    Elf64_Rela r{};
    r.r_offset = p.offset;
    r.r_info = ELF64_R_INFO(final_index(p.out_symbol), p.type);
    r.r_addend = p.addend;
    by_section[p.section].push_back(r);
  }
  size_t content_sections = sections_.size();
  size_t symtab_index = content_sections + by_section.size() + 1;
  for (auto& [index, relas] : by_section) {
    OutSection rs;
    rs.name = ".rela" + section(index).name;
    rs.type = SHT_RELA;
    rs.flags = SHF_INFO_LINK;
    rs.align = 8;
    rs.entsize = sizeof(Elf64_Rela);
    rs.link = static_cast<uint32_t>(symtab_index);
    rs.info = static_cast<uint32_t>(index);
    rs.data.resize(relas.size() * sizeof(Elf64_Rela));
    std::memcpy(rs.data.data(), relas.data(), rs.data.size());
    add_section(std::move(rs));
  }
  std::vector<Elf64_Sym> symbols = locals_;
  symbols.insert(symbols.end(), globals_.begin(), globals_.end());
  OutSection symtab;
  symtab.name = ".symtab";
  symtab.type = SHT_SYMTAB;
  symtab.align = 8;
  symtab.entsize = sizeof(Elf64_Sym);
  symtab.link = static_cast<uint32_t>(symtab_index + 1);
  symtab.info = static_cast<uint32_t>(locals_.size());
  symtab.data.resize(symbols.size() * sizeof(Elf64_Sym));
  std::memcpy(symtab.data.data(), symbols.data(), symtab.data.size());
  add_section(std::move(symtab));
  OutSection strtab;
  strtab.name = ".strtab";
  strtab.type = SHT_STRTAB;
  if (strtab_.empty()) strtab_.push_back('\0');
  strtab.data.assign(strtab_.begin(), strtab_.end());
  add_section(std::move(strtab));
  std::vector<char> shstr;
  std::vector<uint32_t> name_offsets;
  for (const OutSection& s : sections_) name_offsets.push_back(add_string(shstr, s.name));
  uint32_t shstr_name = add_string(shstr, ".shstrtab");
  OutSection shstrtab;
  shstrtab.name = ".shstrtab";
  shstrtab.type = SHT_STRTAB;
  shstrtab.data.assign(shstr.begin(), shstr.end());
  add_section(std::move(shstrtab));
  name_offsets.push_back(shstr_name);

  if (elf_version(EV_CURRENT) == EV_NONE) return make_error(ErrorKind::internal, "libelf initialisation failed");
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_errno_error(ErrorKind::io, "create {}", tmp);
  ScopeGuard close_fd([&] { ::close(fd); });
  Elf* elf = elf_begin(fd, ELF_C_WRITE, nullptr);
  if (!elf) return make_error(ErrorKind::internal, "elf_begin: {}", elf_errmsg(-1));
  ScopeGuard end([&] { elf_end(elf); });
  if (!gelf_newehdr(elf, ELFCLASS64)) return make_error(ErrorKind::internal, "gelf_newehdr: {}", elf_errmsg(-1));
  GElf_Ehdr eh;
  gelf_getehdr(elf, &eh);
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
  eh.e_type = ET_REL;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_shstrndx = static_cast<uint16_t>(sections_.size());
  gelf_update_ehdr(elf, &eh);

  for (size_t i = 0; i < sections_.size(); ++i) {
    OutSection& s = sections_[i];
    Elf_Scn* scn = elf_newscn(elf);
    if (!scn) return make_error(ErrorKind::internal, "elf_newscn: {}", elf_errmsg(-1));
    Elf_Data* d = elf_newdata(scn);
    d->d_type = ELF_T_BYTE;
    d->d_align = s.align;
    d->d_version = EV_CURRENT;
    d->d_buf = s.type == SHT_NOBITS || s.data.empty() ? nullptr : s.data.data();
    d->d_size = s.type == SHT_NOBITS ? s.size : s.data.size();
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    sh.sh_name = name_offsets[i];
    sh.sh_type = s.type;
    sh.sh_flags = s.flags;
    sh.sh_addralign = s.align;
    sh.sh_entsize = s.entsize;
    sh.sh_link = s.link;
    sh.sh_info = s.info;
    sh.sh_size = d->d_size;
    gelf_update_shdr(scn, &sh);
  }
  if (elf_update(elf, ELF_C_WRITE) < 0) return make_error(ErrorKind::io, "writing {}: {}", path, elf_errmsg(-1));
  end.dismiss();
  elf_end(elf);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return make_errno_error(ErrorKind::io, "rename {} to {}", tmp, path);
  return ok_result();
}

// Everything about one part: where its sections and symbols went.
struct PartMap {
  std::map<size_t, size_t> section;  // input section -> output section
  std::map<size_t, size_t> symbol;   // input defined symbol -> output symbol (tagged)
};

std::string out_name(const Symbol& s) { return s.twin ? s.twin->name : s.name; }

}  // namespace

Result<void> emit_patch_object(const std::vector<const DiffResult*>& parts, const PatchMetadata& meta,
                               const std::string& out_path) {
  size_t nr_funcs = 0;
  for (const DiffResult* p : parts)
    for (const FunctionChange& f : p->functions) nr_funcs += f.status == Status::changed;
  if (nr_funcs == 0)
    return make_error(ErrorKind::invalid_argument, "nothing to patch: no function's code changed");

  Writer w;
  std::vector<PartMap> maps(parts.size());
  // Sections, each with its section symbol.
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    const Object& obj = *parts[pi]->patched;
    for (size_t index : parts[pi]->inclusion.sections) {
      const Section& in = obj.sections[index];
      OutSection s;
      s.name = in.name;
      s.type = in.type;
      s.flags = in.flags & ~static_cast<uint64_t>(SHF_GROUP);
      s.align = in.align;
      s.entsize = in.entsize;
      s.size = in.size;
      s.data = in.data;
      size_t out = w.add_section(std::move(s));
      maps[pi].section[index] = out;
      w.section(out).symbol = w.add_symbol("", STB_LOCAL, STT_SECTION, static_cast<uint16_t>(out), 0, 0);
    }
  }
  size_t eh_out = 0;
  {
    OutSection eh;
    eh.name = ".eh_frame";
    eh.flags = SHF_ALLOC;
    eh.align = 8;
    for (const DiffResult* p : parts) {
      // Parts' tables are concatenated without their terminators, then one terminator.
      const auto& b = p->inclusion.eh_frame.bytes;
      if (!b.empty()) eh.data.insert(eh.data.end(), b.begin(), b.end() - 4);
    }
    if (!eh.data.empty()) {
      eh.data.insert(eh.data.end(), 4, 0);
      eh_out = w.add_section(std::move(eh));
      w.section(eh_out).symbol = w.add_symbol("", STB_LOCAL, STT_SECTION, static_cast<uint16_t>(eh_out), 0, 0);
    }
  }
  OutSection meta_sec;
  meta_sec.name = ".livegraft.meta";
  meta_sec.flags = SHF_ALLOC;
  meta_sec.align = 8;
  size_t meta_out = w.add_section(std::move(meta_sec));
  w.section(meta_out).symbol = w.add_symbol("", STB_LOCAL, STT_SECTION, static_cast<uint16_t>(meta_out), 0, 0);
  OutSection root_sec;
  root_sec.name = LIVEGRAFT_SECTION;
  root_sec.flags = SHF_ALLOC | SHF_WRITE;
  root_sec.align = 8;
  size_t root_out = w.add_section(std::move(root_sec));
  w.section(root_out).symbol = w.add_symbol("", STB_LOCAL, STT_SECTION, static_cast<uint16_t>(root_out), 0, 0);
  OutSection stack;
  stack.name = ".note.GNU-stack";
  w.add_section(std::move(stack));

  // Defined symbols: locals now, globals after (ELF wants locals first; the writer orders them).
  std::map<std::string, size_t> globals;
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    const Object& obj = *parts[pi]->patched;
    for (const Symbol& s : obj.symbols) {
      auto it = maps[pi].section.find(s.shndx);
      if (s.index == 0 || s.is_section() || s.type == STT_FILE || !s.defined() || it == maps[pi].section.end()) continue;
      std::string name = out_name(s);
      if (s.name.ends_with(".localalias")) continue;  // after the loop: the function it aliases
      if (s.bind != STB_LOCAL) {
        if (globals.count(name))
          return make_error(ErrorKind::unsupported, "global symbol {} is defined by two changed files", name);
        globals[name] = maps[pi].symbol[s.index] =
            w.add_symbol(name, s.bind, s.type, static_cast<uint16_t>(it->second), s.value, s.size, s.other);
      } else {
        maps[pi].symbol[s.index] = w.add_symbol(name, STB_LOCAL, s.type, static_cast<uint16_t>(it->second), s.value, s.size, s.other);
      }
    }
  }
  // GCC's f.localalias (same section and address as f): references to it use f's symbol, so
  // the patch has one name per function (the loader and the reader see `f`).
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    const Object& obj = *parts[pi]->patched;
    for (const Symbol& a : obj.symbols) {
      if (!a.name.ends_with(".localalias") || !a.defined() || !maps[pi].section.count(a.shndx)) continue;
      for (const Symbol& f : obj.symbols)
        if (&f != &a && f.is_function() && f.shndx == a.shndx && f.value == a.value && maps[pi].symbol.count(f.index) &&
            !f.name.ends_with(".localalias"))
          maps[pi].symbol[a.index] = maps[pi].symbol[f.index];
      if (!maps[pi].symbol.count(a.index)) {
        auto it = maps[pi].section.find(a.shndx);
        maps[pi].symbol[a.index] =
            w.add_symbol(out_name(a), STB_LOCAL, a.type, static_cast<uint16_t>(it->second), a.value, a.size, a.other);
      }
    }
  }
  std::map<std::string, size_t> undefined;
  // A reference bound to one definition of a name with several in the target: the undefined
  // symbol "name,N" and a livegraft_sym {"name,N", name, N}, so that parts meaning different
  // copies of one static (a header's, in two changed files) keep them apart.
  std::map<std::string, std::pair<std::string, uint64_t>> bound;
  auto bound_symbol = [&](const std::string& name, uint64_t sympos) {
    std::string ref = fmt::format("{},{}", name, sympos);
    bound.emplace(ref, std::make_pair(name, sympos));
    auto [it, inserted] = undefined.emplace(ref, 0);
    if (inserted) it->second = w.add_symbol(ref, STB_GLOBAL, STT_NOTYPE, SHN_UNDEF, 0, 0);
    return it->second;
  };
  auto external = [&](size_t pi, const std::string& name) {
    if (auto b = parts[pi]->bound.find(name); b != parts[pi]->bound.end() && b->second != 0)
      return bound_symbol(name, b->second);
    if (auto g = globals.find(name); g != globals.end()) return g->second;
    auto [it, inserted] = undefined.emplace(name, 0);
    if (inserted) it->second = w.add_symbol(name, STB_GLOBAL, STT_NOTYPE, SHN_UNDEF, 0, 0);
    return it->second;
  };

  // A kept address of a replaced function (DiffResult::originals) is the original's: "name,N",
  // N its old_sympos (0 for a unique name), so that the pointer the program stores still leads
  // somewhere valid after a revert. Also across parts: a global another part replaces.
  std::map<std::string, std::pair<std::string, uint64_t>> replaced_globals;
  auto sympos_of = [&](size_t pi, const Symbol& f) -> uint64_t {
    for (const FunctionChange& fc : parts[pi]->functions)
      if (fc.status == Status::changed && fc.name == out_name(f)) return fc.sympos;
    return 0;
  };
  for (size_t pi = 0; pi < parts.size(); ++pi)
    for (const Symbol* f : parts[pi]->inclusion.replaced)
      if (f->bind != STB_LOCAL) replaced_globals[out_name(*f)] = {out_name(*f), sympos_of(pi, *f)};
  auto kept_original = [&](size_t pi, const Section& from, const Relocation& r) -> std::optional<size_t> {
    const Object& obj = *parts[pi]->patched;
    if (const Symbol* f = kept_address_of(obj, from, r, parts[pi]->inclusion.replaced))
      return bound_symbol(out_name(*f), sympos_of(pi, *f));
    const Symbol& raw = obj.symbols[r.symbol];
    if (raw.defined() || offset_in_target(r.type, r.addend) != 0 || is_branch_relocation(from, r)) return std::nullopt;
    auto g = replaced_globals.find(raw.name);
    if (g == replaced_globals.end()) return std::nullopt;
    return bound_symbol(g->second.first, g->second.second);
  };

  // Relocations of the copied sections (`from`) and of the unwind table (`from` null).
  auto emit_relocation = [&](size_t pi, size_t out_section, const Relocation& r, uint64_t offset, const Section* from) {
    const Object& obj = *parts[pi]->patched;
    if (from) {
      if (auto original = kept_original(pi, *from, r)) {
        w.add_rela(out_section, offset, r.type, *original, resolve_target(obj, r).addend);
        return;
      }
    }
    const Symbol& raw = obj.symbols[r.symbol];
    bool got = r.type == R_X86_64_GOTPCREL || r.type == R_X86_64_GOTPCRELX || r.type == R_X86_64_REX_GOTPCRELX;
    if (got) {
      // A GOT slot holds the symbol's address; the addend applies to the slot's address, so the
      // symbol cannot be folded into a section symbol plus offset.
      RelocTarget t = resolve_target(obj, r);
      if (t.kind == TargetKind::symbol && maps[pi].symbol.count(t.symbol->index) && t.addend == r.addend) {
        w.add_rela(out_section, offset, r.type, maps[pi].symbol[t.symbol->index], r.addend);
        return;
      }
    }
    if (raw.defined() && maps[pi].section.count(raw.shndx)) {
      // Inside the patch: through the copied section's symbol, so no name lookup is involved.
      size_t target = maps[pi].section[raw.shndx];
      w.add_rela(out_section, offset, r.type, w.section(target).symbol, static_cast<int64_t>(raw.value) + r.addend);
      return;
    }
    RelocTarget t = resolve_target(obj, r);
    if (t.kind == TargetKind::symbol && t.symbol->defined() && maps[pi].section.count(t.symbol->shndx)) {
      size_t target = maps[pi].section[t.symbol->shndx];
      w.add_rela(out_section, offset, r.type, w.section(target).symbol, static_cast<int64_t>(t.symbol->value) + t.addend);
      return;
    }
    std::string name = t.symbol->defined() ? out_name(*t.symbol) : t.symbol->name;
    w.add_rela(out_section, offset, r.type, external(pi, name), t.addend);
  };
  size_t eh_at = 0;
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    const Object& obj = *parts[pi]->patched;
    for (size_t index : parts[pi]->inclusion.sections)
      for (const Relocation& r : obj.sections[index].relocations)
        emit_relocation(pi, maps[pi].section[index], r, r.offset, &obj.sections[index]);
    const EhFrameSubset& eh = parts[pi]->inclusion.eh_frame;
    for (const Relocation& r : eh.relocations) emit_relocation(pi, eh_out, r, eh_at + r.offset, nullptr);
    if (!eh.bytes.empty()) eh_at += eh.bytes.size() - 4;
  }

  // Metadata: [object][funcs...][syms...][strings] in .livegraft.meta; the root in .livegraft.
  std::vector<uint8_t>& m = w.section(meta_out).data;
  size_t meta_sym = w.section(meta_out).symbol;
  const size_t objects_off = 0;
  const size_t funcs_off = sizeof(livegraft_object);
  const size_t syms_off = funcs_off + nr_funcs * sizeof(livegraft_func);
  m.resize(syms_off + bound.size() * sizeof(livegraft_sym));
  auto add_meta_string = [&](const std::string& s) {
    size_t at = m.size();
    m.insert(m.end(), s.begin(), s.end());
    m.push_back('\0');
    return at;
  };
  livegraft_object object{};
  object.nr_funcs = nr_funcs;
  if (meta.object_name) w.add_rela(meta_out, objects_off + offsetof(livegraft_object, name), R_X86_64_64, meta_sym, add_meta_string(*meta.object_name));
  if (meta.build_id) w.add_rela(meta_out, objects_off + offsetof(livegraft_object, build_id), R_X86_64_64, meta_sym, add_meta_string(*meta.build_id));
  w.add_rela(meta_out, objects_off + offsetof(livegraft_object, funcs), R_X86_64_64, meta_sym, funcs_off);
  object.nr_syms = bound.size();
  if (!bound.empty()) w.add_rela(meta_out, objects_off + offsetof(livegraft_object, syms), R_X86_64_64, meta_sym, syms_off);
  std::memcpy(m.data() + objects_off, &object, sizeof object);
  size_t j = 0;
  for (const auto& [ref, what] : bound) {
    livegraft_sym sym{};
    sym.old_sympos = what.second;
    size_t at = syms_off + j++ * sizeof(livegraft_sym);
    std::memcpy(m.data() + at, &sym, sizeof sym);
    w.add_rela(meta_out, at + offsetof(livegraft_sym, name), R_X86_64_64, meta_sym, add_meta_string(ref));
    w.add_rela(meta_out, at + offsetof(livegraft_sym, old_name), R_X86_64_64, meta_sym, add_meta_string(what.first));
  }
  size_t k = 0;
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    for (const Symbol* s : parts[pi]->inclusion.replaced) {
      const FunctionChange* fc = nullptr;
      for (const FunctionChange& f : parts[pi]->functions)
        if (f.status == Status::changed && f.name == s->twin->name) fc = &f;
      livegraft_func func{};
      func.old_sympos = fc ? fc->sympos : 0;
      size_t at = funcs_off + k * sizeof(livegraft_func);
      std::memcpy(m.data() + at, &func, sizeof func);
      w.add_rela(meta_out, at + offsetof(livegraft_func, old_name), R_X86_64_64, meta_sym, add_meta_string(s->twin->name));
      w.add_rela(meta_out, at + offsetof(livegraft_func, new_func), R_X86_64_64, maps[pi].symbol.at(s->index), 0);
      ++k;
    }
  }
  livegraft_patch root{};
  root.magic = LIVEGRAFT_MAGIC;
  root.version = LIVEGRAFT_LAYOUT_VERSION;
  root.size = sizeof(livegraft_patch);
  root.nr_objects = 1;
  root.flags = meta.immediate ? LIVEGRAFT_PATCH_IMMEDIATE : 0;
  for (const DiffResult* p : parts)
    if (!p->kept_new.empty()) root.flags |= LIVEGRAFT_PATCH_KEEP_CODE;
  std::vector<uint8_t>& rd = w.section(root_out).data;
  rd.resize(sizeof root);
  std::memcpy(rd.data(), &root, sizeof root);
  w.add_rela(root_out, offsetof(livegraft_patch, name), R_X86_64_64, meta_sym, add_meta_string(meta.name));
  w.add_rela(root_out, offsetof(livegraft_patch, objects), R_X86_64_64, meta_sym, objects_off);
  w.section(meta_out).size = m.size();
  w.add_symbol("livegraft_patch_root", STB_LOCAL, STT_OBJECT, static_cast<uint16_t>(root_out), 0, sizeof root);
  return w.write(out_path);
}

}  // namespace lg::builder
