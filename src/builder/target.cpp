#include "builder/target.h"

#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iterator>

#include "common/hex.h"
#include "common/scope_guard.h"
#include "elf/elf_file.h"
#include "elf/sympos.h"

namespace lg::builder {

namespace {

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Where the target file really is. `/proc/PID/exe` (what the README suggests) and other symlinks
// give the binary's own directory only once resolved, and a .gnu_debuglink names a file there.
// A /proc/PID/exe whose file was deleted or replaced cannot be resolved: its link text still says
// where the file was.
std::string real_path_of(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  if (!ec) return real.string();
  fs::path link = fs::read_symlink(path, ec);
  std::string s = ec ? std::string() : link.string();
  constexpr std::string_view kDeleted = " (deleted)";
  if (s.ends_with(kDeleted)) s.resize(s.size() - kDeleted.size());
  return s.starts_with('/') ? s : path;
}

}  // namespace

Result<std::vector<uint8_t>> TargetBinary::read(uint64_t vaddr, uint64_t len) const {
  for (const Load& l : loads) {
    if (vaddr >= l.vaddr && vaddr + len <= l.vaddr + l.filesz) {
      uint64_t off = l.offset + (vaddr - l.vaddr);
      if (off + len > bytes.size()) break;
      return std::vector<uint8_t>(bytes.begin() + off, bytes.begin() + off + len);
    }
  }
  if (!has_code)
    return make_error(ErrorKind::invalid_argument,
                      "{} is a separate debug file (its code sections are empty): pass the binary itself (or "
                      "/proc/PID/exe) as the target and this file with --symbols", path);
  return make_error(ErrorKind::bad_patch, "{}: address {:#x}+{} is not in the file image", path, vaddr, len);
}

namespace {

// The defined symbols of `table` (a .symtab or .dynsym of `elf`) with the source file of each
// local, into t.symbols / t.source_files.
void read_symbol_table(Elf* elf, Elf_Scn* table, TargetBinary& t) {
  GElf_Shdr sh;
  gelf_getshdr(table, &sh);
  Elf_Data* d = elf_getdata(table, nullptr);
  std::string file;
  size_t group = 0;
  for (size_t i = 1; d && i < sh.sh_size / std::max<uint64_t>(sh.sh_entsize, 1); ++i) {
    GElf_Sym s;
    if (!gelf_getsym(d, static_cast<int>(i), &s)) continue;
    const char* n = elf_strptr(elf, sh.sh_link, s.st_name);
    std::string name = n ? n : "";
    uint8_t type = GELF_ST_TYPE(s.st_info), bind = GELF_ST_BIND(s.st_info);
    if (type == STT_FILE) {
      file = base_name(name);
      ++group;
      t.source_files.insert(file);
      continue;
    }
    if (!counts_for_sympos(s.st_shndx != SHN_UNDEF, type)) continue;  // the old_sympos rule: src/elf/sympos.h
    bool local = bind == STB_LOCAL;
    t.symbols.push_back({name, type, bind, s.st_value, s.st_size, local ? file : std::string(), local ? group : 0});
  }
}

Elf_Scn* find_table(Elf* elf, uint32_t type) {
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) && sh.sh_type == type) return scn;
  }
  return nullptr;
}

}  // namespace

Result<TargetBinary> load_target(const std::string& path, const DebugFileOptions* debug) {
  TargetBinary t;
  t.path = path;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_errno_error(ErrorKind::not_found, "open target {}", path);
    t.bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  if (elf_version(EV_CURRENT) == EV_NONE) return make_error(ErrorKind::internal, "libelf initialisation failed");
  Elf* elf = elf_memory(reinterpret_cast<char*>(t.bytes.data()), t.bytes.size());
  if (!elf) return make_error(ErrorKind::bad_patch, "{}: not an ELF file: {}", path, elf_errmsg(-1));
  ScopeGuard end([&] { elf_end(elf); });
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf, &eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    return make_error(ErrorKind::bad_patch, "{}: not an ELF64 x86-64 file", path);
  if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    return make_error(ErrorKind::invalid_argument, "{}: the target must be an executable or shared library", path);

  size_t nph = 0;
  elf_getphdrnum(elf, &nph);
  for (size_t i = 0; i < nph; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf, static_cast<int>(i), &ph)) continue;
    if (ph.p_type == PT_LOAD) t.loads.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz});
  }

  size_t shstrndx = 0;
  elf_getshdrstrndx(elf, &shstrndx);
  Elf_Scn* symtab = nullptr;
  Elf_Scn* dynsym = nullptr;
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (sh.sh_type == SHT_NOTE && d) {
      size_t off = 0, name_off, desc_off;
      GElf_Nhdr nh;
      while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            std::string_view(static_cast<const char*>(d->d_buf) + name_off, 3) == "GNU")
          t.build_id = to_hex(std::span<const uint8_t>(static_cast<const uint8_t*>(d->d_buf) + desc_off, nh.n_descsz));
      }
    } else if (sh.sh_type == SHT_SYMTAB) {
      symtab = scn;
    } else if (sh.sh_type == SHT_DYNSYM) {
      dynsym = scn;
    } else if (sh.sh_type == SHT_DYNAMIC && d) {
      for (size_t i = 0; i < sh.sh_size / std::max<uint64_t>(sh.sh_entsize, 1); ++i) {
        GElf_Dyn dyn;
        if (gelf_getdyn(d, static_cast<int>(i), &dyn) && dyn.d_tag == DT_SONAME) {
          const char* s = elf_strptr(elf, sh.sh_link, dyn.d_un.d_val);
          if (s) t.soname = s;
        }
      }
    }
  }
  // The names the binary imports (undefined in .dynsym): the dynamic linker binds them, so a
  // patch may use them too.
  if (dynsym) {
    GElf_Shdr sh;
    gelf_getshdr(dynsym, &sh);
    Elf_Data* d = elf_getdata(dynsym, nullptr);
    for (size_t i = 1; d && i < sh.sh_size / std::max<uint64_t>(sh.sh_entsize, 1); ++i) {
      GElf_Sym s;
      if (!gelf_getsym(d, static_cast<int>(i), &s)) continue;
      if (const char* n = elf_strptr(elf, sh.sh_link, s.st_name); n && *n)
        (s.st_shndx == SHN_UNDEF ? t.imports : t.exports).insert(n);
    }
  }
  // A separate debug file given as the target: sections and symbols, no code.
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    const char* n = elf_strptr(elf, shstrndx, sh.sh_name);
    if (n && std::string_view(n) == ".text" && sh.sh_type == SHT_NOBITS) t.has_code = false;
  }
  if (!symtab) {
    // Stripped: the symbols of its separate debug file, found the way `apply` finds them.
    DebugFileOptions defaults;
    if (!debug) defaults.roots = default_debug_roots("");
    auto object = ElfFile::open(path);
    if (!object) return std::move(object).error().context("reading the target " + path);
    auto found = find_debug_file(*object, real_path_of(path), debug ? *debug : defaults, &t.debug_tried);
    if (!found) return std::move(found).error();
    if (*found) {
      Elf* dbg = (*found)->elf->raw();
      if (Elf_Scn* table = find_table(dbg, SHT_SYMTAB)) {
        t.has_symtab = true;
        t.debug_file = (*found)->path;
        t.debug_origin = (*found)->origin;
        read_symbol_table(dbg, table, t);
        return t;
      }
    }
  }
  Elf_Scn* table = symtab ? symtab : dynsym;
  t.has_symtab = symtab != nullptr;
  if (table) read_symbol_table(elf, table, t);
  return t;
}

Result<Located> locate(const TargetBinary& target, const std::string& name, const std::string& source_file,
                       bool local, const std::set<std::string>* unit_locals) {
  Located out;
  std::vector<size_t> all;
  for (size_t i = 0; i < target.symbols.size(); ++i)
    if (target.symbols[i].name == name) all.push_back(i);
  out.count = all.size();
  if (all.empty())
    return make_error(ErrorKind::not_found, "{} is not in the symbol table of {}{}", name, target.path,
                      target.has_symtab ? (target.debug_file.empty() ? std::string(" (was it built from the same source?)")
                                                                     : fmt::format(" nor of its debug file {} (was it built from the same source?)", target.debug_file))
                                        : fmt::format(" (the binary is stripped and no debug file was found{}{}: pass it with "
                                                      "--symbols FILE, install the debug package, or set DEBUGINFOD_URLS)",
                                                      target.debug_tried.empty() ? "" : "; looked for ",
                                                      fmt::join(target.debug_tried, ", ")));
  if (all.size() == 1) {
    out.symbol = &target.symbols[all[0]];
    return out;
  }
  std::string file = base_name(source_file);
  std::vector<size_t> matches;  // positions in `all`
  for (size_t k = 0; k < all.size(); ++k) {
    const TargetSymbol& s = target.symbols[all[k]];
    if (local ? (s.bind == STB_LOCAL && s.file == file) : s.bind != STB_LOCAL) matches.push_back(k);
  }
  // Several files of that name (src/a/util.c, src/b/util.c): the one whose locals are the
  // original object's. A group with a local function or object the original does not have is
  // another file.
  if (local && matches.size() > 1 && unit_locals) {
    std::vector<size_t> fitting;
    for (size_t k : matches) {
      size_t group = target.symbols[all[k]].group;
      bool fits = std::all_of(target.symbols.begin(), target.symbols.end(), [&](const TargetSymbol& s) {
        return s.group != group || (s.type != STT_FUNC && s.type != STT_OBJECT) || unit_locals->contains(s.name);
      });
      if (fits) fitting.push_back(k);
    }
    if (!fitting.empty()) matches = std::move(fitting);
  }
  if (matches.size() != 1) {
    std::vector<std::string> candidates;
    for (size_t k : matches) {
      const TargetSymbol& s = target.symbols[all[k]];
      candidates.push_back(fmt::format("#{} at {:#x} (the {} locals after file symbol #{})", k + 1, s.value, s.file, s.group));
    }
    std::string scope = local ? file : std::string("the global scope");
    if (matches.empty())
      return make_error(ErrorKind::unsupported, "{} has {} definitions in {} and none of them belongs to {}: cannot tell which one is meant",
                        name, all.size(), target.path, scope);
    return make_error(ErrorKind::unsupported,
                      "{} has {} definitions in {} and {} of them belong to {}: cannot tell which one is meant{}: {}{}", name,
                      all.size(), target.path, matches.size(), scope,
                      local ? fmt::format(" (several files named {}, with the same local symbols)", file) : std::string(),
                      fmt::join(candidates, "; "),
                      local ? "; rename the file or the symbol, or write the patch by hand with LIVEGRAFT_SYM (docs/patch-format.md)"
                            : "");
  }
  size_t pick = matches[0];
  out.symbol = &target.symbols[all[pick]];
  out.sympos = sympos_for(pick, all.size());  // the controller selects it again with choose_sympos()
  return out;
}

}  // namespace lg::builder
