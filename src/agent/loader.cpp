#include "agent/loader.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "agent/elf_reader.h"
#include "elf/eh_frame_check.h"
#include "elf/patch_checks.h"
#include "agent/relocate.h"
#include "common/fd.h"
#include "x86/encode.h"
#include "x86/entry_thunk.h"

namespace lg::agent {

namespace {

constexpr uint64_t kVeneerSize = 8;  // ff 25 disp32 + 2 bytes of int3 padding
using elf::kMaxPatchFile;

// A read-only private mapping of the patch file, unmapped on destruction.
class FileView {
 public:
  static Result<FileView> open(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) {
      ErrorKind k = errno == ENOENT ? ErrorKind::not_found : ErrorKind::io;
      return make_errno_error(k, "open patch object {}", path);
    }
    return map(fd.get(), path);
  }
  // Maps the file open at [fd] (the controller's descriptor, received with SCM_RIGHTS).
  static Result<FileView> map(int fd, const std::string& label) {
    struct stat st{};
    if (::fstat(fd, &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", label);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorKind::bad_patch, "{} is not a regular file", label);
    if (st.st_size <= 0 || static_cast<uint64_t>(st.st_size) > kMaxPatchFile)
      return make_error(ErrorKind::bad_patch, "{}: size {} is not that of a patch object", label, st.st_size);
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return make_errno_error(ErrorKind::io, "mmap {}", label);
    FileView v;
    v.data_ = static_cast<uint8_t*>(p);
    v.size_ = static_cast<size_t>(st.st_size);
    return v;
  }
  FileView() = default;
  FileView(FileView&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_) {}
  ~FileView() {
    if (data_) ::munmap(data_, size_);
  }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

enum class Group { text, rodata, data, count };

int group_prot(Group g) {
  switch (g) {
    case Group::text: return PROT_READ | PROT_EXEC;
    case Group::rodata: return PROT_READ;
    default: return PROT_READ | PROT_WRITE;
  }
}

Group group_of(const Elf64_Shdr& h) {
  if (h.sh_flags & SHF_EXECINSTR) return Group::text;
  if (h.sh_flags & SHF_WRITE) return Group::data;
  return Group::rodata;
}

uint64_t align_up(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) / a * a; }

std::string sym_label(const RelObject& obj, size_t i) {
  auto n = obj.symbol_name(i);
  return n.empty() ? fmt::format("#{}", i) : std::string(n);
}

}  // namespace

// Does one load; a class so that the steps can share the layout.
class ObjectLoader {
 public:
  explicit ObjectLoader(const LoadOptions& opts) : opts_(opts) {}
  Result<std::unique_ptr<LoadedObject>> run();
  // Parses and checks [bytes] and plans the layout, without mapping anything.
  Result<void> plan(std::span<const uint8_t> bytes, const std::string& label);

 private:
  Result<void> layout();
  uint64_t thunk_eh_bytes() const;
  Result<void> scan_relocations();
  Result<void> resolve_undefined();
  Result<void> place_and_copy();
  Result<void> apply_relocations();
  Result<bool> try_rewrite_data_ref(const RelocInputs& in, size_t sec);
  Result<void> protect();
  Result<void> check_loaded_eh_frame() const;
  void register_eh_frame();
  void collect_init_fini();
  Error reloc_error(const Error& e, const Elf64_Rela& r, size_t sec) const;

  const LoadOptions& opts_;
  std::optional<FileView> file_;
  std::optional<RelObject> obj_;
  std::unique_ptr<LoadedObject> out_;

  // Layout, as offsets from the start of the reservation (after layout(): offsets within the
  // group; place_and_copy() adds the group starts).
  std::vector<int64_t> sec_off_;  // -1: not loaded
  std::vector<Group> sec_group_;
  uint64_t group_size_[3] = {0, 0, 0};
  uint64_t group_start_[3] = {0, 0, 0};
  std::map<size_t, uint64_t> common_off_;   // symbol index -> offset in the data group
  std::map<size_t, uint64_t> got_index_;    // symbol index -> GOT slot number
  std::map<size_t, uint64_t> veneer_index_; // symbol index -> veneer number
  uint64_t got_off_ = 0, veneer_off_ = 0;   // within their groups
  int eh_frame_sec_ = -1;
  bool uses_got_base_ = false;
  // External data reached PC-relatively (src/x86/data_reference.h): (section, field) -> ref.
  std::map<std::pair<size_t, uint64_t>, size_t> data_ref_at_;
  uint64_t data_thunk_off_ = 0;  // within the text group, kDataRefThunkSize bytes per ref
  // Entry thunks (src/x86/entry_thunk.h): code in the text group, target slots in the data
  // group, CFI after the patch's .eh_frame (or on its own in the rodata group).
  std::vector<x86::EntryThunkCode> thunk_code_;
  std::vector<uint64_t> thunk_off_, thunk_slot_off_;
  uint64_t thunk_eh_size_ = 0, thunk_eh_off_ = 0;  // thunk_eh_off_: standalone, in rodata
  Result<void> layout_entry_thunks();
  Result<void> place_entry_thunks();

  std::vector<uint64_t> sym_addr_;
  std::vector<bool> sym_needed_;
};

Result<std::unique_ptr<LoadedObject>> load_object(const LoadOptions& opts) {
  ObjectLoader loader(opts);
  return loader.run();
}

Result<void> plan_load(std::span<const uint8_t> bytes, const std::string& label) {
  LoadOptions opts;
  ObjectLoader loader(opts);
  return loader.plan(bytes, label);
}

Result<void> ObjectLoader::plan(std::span<const uint8_t> bytes, const std::string& label) {
  LG_TRY(auto parsed, RelObject::parse(bytes, label));
  obj_.emplace(std::move(parsed));
  // The checks the controller ran before injecting us: the same code, so a patch it accepted
  // loads, and a file that changed since (or a controller that skipped them) is refused here.
  LG_TRY_VOID(elf::check_loadable(*obj_));
  LG_TRY_VOID(layout());
  LG_TRY_VOID(scan_relocations());
  return ok_result();
}

Result<std::unique_ptr<LoadedObject>> ObjectLoader::run() {
  if (opts_.fd >= 0) {
    LG_TRY(auto fv, FileView::map(opts_.fd, opts_.path));
    file_.emplace(std::move(fv));
  } else {
    LG_TRY(auto fv, FileView::open(opts_.path));
    file_.emplace(std::move(fv));
  }
  LG_TRY_VOID(plan(file_->bytes(), opts_.path));
  out_.reset(new LoadedObject());
  out_->path_ = opts_.path;
  LG_TRY_VOID(resolve_undefined());
  LG_TRY_VOID(place_and_copy());
  LG_TRY_VOID(apply_relocations());
  LG_TRY_VOID(protect());
  collect_init_fini();
  LG_TRY_VOID(check_loaded_eh_frame());
  register_eh_frame();
  return std::move(out_);
}

Result<void> ObjectLoader::layout() {
  const auto& o = *obj_;
  for (const auto& preserve : opts_.entry_thunks) thunk_code_.push_back(x86::encode_entry_thunk(preserve));
  size_t n = o.sections().size();
  sec_off_.assign(n, -1);
  sec_group_.assign(n, Group::data);
  for (size_t i = 0; i < n; ++i) {
    const auto& s = o.sections()[i];
    if (!s.is_alloc() || s.hdr.sh_type == SHT_GROUP) continue;
    uint64_t align = std::max<uint64_t>(s.hdr.sh_addralign, 1);  // a power of two <= a page (check_loadable)
    Group g = group_of(s.hdr);
    auto& size = group_size_[static_cast<int>(g)];
    size = align_up(size, align);
    sec_off_[i] = static_cast<int64_t>(size);
    sec_group_[i] = g;
    size += s.hdr.sh_size;
    if (s.name == ".eh_frame" && s.hdr.sh_size > 0 && eh_frame_sec_ < 0) {
      eh_frame_sec_ = static_cast<int>(i);
      size += thunk_eh_bytes();  // the entry thunks' CIE and FDEs follow the patch's own
      size += 4;  // 1. __register_frame walks CIEs/FDEs until a zero length word: add it.
    }
  }
  // COMMON symbols (st_value is their alignment) go to the data group.
  for (size_t i = 1; i < o.symbols().size(); ++i) {
    if (o.symbol_section(i) != SHN_COMMON) continue;
    const auto& s = o.symbols()[i];
    uint64_t align = std::max<uint64_t>(s.st_value, 1);
    if (align > kPageSize) return make_error(ErrorKind::unsupported, "{}: common symbol '{}' wants alignment {}", o.label(), sym_label(o, i), align);
    auto& size = group_size_[static_cast<int>(Group::data)];
    size = align_up(size, align);
    common_off_[i] = size;
    size += s.st_size;
  }
  return ok_result();
}

Result<void> ObjectLoader::scan_relocations() {
  const auto& o = *obj_;
  sym_needed_.assign(o.symbols().size(), false);
  for (size_t i = 0; i < opts_.data_refs.size(); ++i) {
    const auto& d = opts_.data_refs[i];
    bool at_end = d.offset + 4 == d.insn + d.len;
    if (d.section >= o.sections().size() || sec_off_[d.section] < 0 || d.len < 5 || d.offset < d.insn ||
        d.insn + d.len > o.sections()[d.section].hdr.sh_size || d.offset + 4 > d.insn + d.len ||
        (d.kind != x86::DataRefKind::generic && !at_end))
      return make_error(ErrorKind::invalid_argument, "{}: data reference #{} does not describe an instruction of a loaded section",
                        o.label(), i);
    data_ref_at_[{d.section, d.offset}] = i;
  }
  for (size_t sec = 0; sec < o.sections().size(); ++sec) {
    if (sec_off_[sec] < 0) continue;
    auto bytes = o.section_data(sec);
    for (const auto& r : o.relocations_for(sec)) {
      uint32_t type = ELF64_R_TYPE(r.r_info);
      size_t sym = ELF64_R_SYM(r.r_info);
      // Types, bounds and symbols were checked by check_loadable().
      if (sym != 0) sym_needed_[sym] = true;
      if (sym != 0 && o.symbol_section(sym) == SHN_UNDEF && o.symbol_name(sym) == "_GLOBAL_OFFSET_TABLE_") uses_got_base_ = true;
      if (type == R_X86_64_GOTPC32 || type == R_X86_64_GOTPC64 || type == R_X86_64_GOTOFF64) uses_got_base_ = true;
      bool data_ref = type == R_X86_64_PC32 && data_ref_at_.count({sec, r.r_offset});
      if ((uses_got_slot(type) || data_ref) && !got_index_.count(sym)) {
        uint64_t slot = got_index_.size() + veneer_index_.size();
        got_index_[sym] = slot;
      }
      // A call or jump to a symbol outside the patch may have to go through a veneer when it
      // lands beyond +-2 GiB (libc, seen from a main executable). PC32 only qualifies when it is
      // the operand of e8 (call) / e9 (jmp): a far data reference cannot be fixed that way.
      bool undefined = sym != 0 && o.symbol_section(sym) == SHN_UNDEF;
      bool branch = type == R_X86_64_PLT32 ||
                    (type == R_X86_64_PC32 && r.r_offset >= 1 && r.r_offset <= bytes.size() &&
                     (bytes[r.r_offset - 1] == 0xe8 || bytes[r.r_offset - 1] == 0xe9));
      if (undefined && branch && !veneer_index_.count(sym)) {
        uint64_t n = veneer_index_.size();
        veneer_index_[sym] = n;
      }
    }
  }
  // Veneer slots live in the GOT after the GOTPCREL slots (renumber them to be contiguous).
  uint64_t next = 0;
  for (auto& [sym, slot] : got_index_) slot = next++;
  auto& ro = group_size_[static_cast<int>(Group::rodata)];
  ro = align_up(ro, 8);
  got_off_ = ro;
  ro += 8 * (got_index_.size() + veneer_index_.size());
  if (uses_got_base_ && got_index_.empty() && veneer_index_.empty()) ro += 8;  // a GOT address that is ours
  auto& text = group_size_[static_cast<int>(Group::text)];
  text = align_up(text, 16);
  veneer_off_ = text;
  text += kVeneerSize * veneer_index_.size();
  data_thunk_off_ = text;
  text += x86::kDataRefThunkSize * data_ref_at_.size();
  return layout_entry_thunks();
}

Result<void> ObjectLoader::resolve_undefined() {
  const auto& o = *obj_;
  sym_addr_.assign(o.symbols().size(), 0);
  for (size_t i = 1; i < o.symbols().size(); ++i) {
    if (!sym_needed_[i] || o.symbol_section(i) != SHN_UNDEF) continue;
    auto name = o.symbol_name(i);
    if (name == "_GLOBAL_OFFSET_TABLE_") continue;  // resolved once the GOT is placed
    if (auto it = opts_.symbols.find(name); it != opts_.symbols.end()) {
      sym_addr_[i] = it->second;
      continue;
    }
    if (opts_.dlsym_names.count(name)) {
      std::string n(name);
      if (void* p = ::dlsym(RTLD_DEFAULT, n.c_str())) {
        sym_addr_[i] = reinterpret_cast<uint64_t>(p);
        continue;
      }
    }
    if (ELF64_ST_BIND(o.symbols()[i].st_info) == STB_WEAK) continue;  // an unresolved weak symbol is 0
    return Error(ErrorKind::not_found,
                 fmt::format("{}: undefined symbol '{}' is not defined in the patch, not in the request's symbols{}",
                             o.label(), name, opts_.dlsym_names.count(name) ? " and dlsym(RTLD_DEFAULT) does not find it" : " and not in its dlsym list"));
  }
  return ok_result();
}

Result<void> ObjectLoader::place_and_copy() {
  const auto& o = *obj_;
  uint64_t total = 0;
  for (int g = 0; g < static_cast<int>(Group::count); ++g) {
    group_start_[g] = total;
    total += page_up(group_size_[g]);
  }
  if (total == 0) total = kPageSize;
  auto label = fmt::format("loading {}", o.label());
  LG_TRY(auto mem, reserve_near(opts_.target, total, label));
  out_->mem_ = std::move(mem);
  const uint64_t base = out_->mem_.addr();
  auto& regions = out_->regions_;
  for (size_t i = 0; i < o.sections().size(); ++i) {
    if (sec_off_[i] < 0) continue;
    int g = static_cast<int>(sec_group_[i]);
    sec_off_[i] += static_cast<int64_t>(group_start_[g]);
    auto data = o.section_data(i);
    if (!data.empty()) std::memcpy(out_->mem_.ptr(static_cast<uint64_t>(sec_off_[i])), data.data(), data.size());
    regions.push_back({o.sections()[i].name, base + static_cast<uint64_t>(sec_off_[i]), o.sections()[i].hdr.sh_size, group_prot(sec_group_[i])});
  }
  got_off_ += group_start_[static_cast<int>(Group::rodata)];
  veneer_off_ += group_start_[static_cast<int>(Group::text)];
  data_thunk_off_ += group_start_[static_cast<int>(Group::text)];
  if (!data_ref_at_.empty())
    regions.push_back({"[data thunks]", base + data_thunk_off_, x86::kDataRefThunkSize * data_ref_at_.size(), PROT_READ | PROT_EXEC});
  const uint64_t got = base + got_off_;
  uint64_t nslots = got_index_.size() + veneer_index_.size();
  if (nslots) regions.push_back({"[got]", got, 8 * nslots, PROT_READ});
  if (!veneer_index_.empty()) regions.push_back({"[veneers]", base + veneer_off_, kVeneerSize * veneer_index_.size(), PROT_READ | PROT_EXEC});
  out_->code_lo_ = base + group_start_[static_cast<int>(Group::text)];
  out_->code_hi_ = out_->code_lo_ + group_size_[static_cast<int>(Group::text)];
  if (eh_frame_sec_ >= 0)
    out_->eh_frame_ = RemoteRange{RemoteAddr(base + static_cast<uint64_t>(sec_off_[eh_frame_sec_])),
                                  RemoteAddr(base + static_cast<uint64_t>(sec_off_[eh_frame_sec_]) + o.sections()[eh_frame_sec_].hdr.sh_size)};
  LG_TRY_VOID(place_entry_thunks());

  // Defined symbols get their run-time addresses.
  uint64_t common_base = base + group_start_[static_cast<int>(Group::data)];
  for (size_t i = 1; i < o.symbols().size(); ++i) {
    const auto& s = o.symbols()[i];
    uint32_t shndx = o.symbol_section(i);
    if (shndx == SHN_UNDEF) {
      if (o.symbol_name(i) == "_GLOBAL_OFFSET_TABLE_") sym_addr_[i] = got;
      continue;
    }
    if (shndx == SHN_ABS) {
      sym_addr_[i] = s.st_value;
    } else if (shndx == SHN_COMMON) {
      sym_addr_[i] = common_base + common_off_[i];
      regions.push_back({"[common]", sym_addr_[i], s.st_size, PROT_READ | PROT_WRITE});
    } else if (sec_off_[shndx] >= 0) {
      sym_addr_[i] = base + static_cast<uint64_t>(sec_off_[shndx]) + s.st_value;
    } else {
      if (sym_needed_[i])
        return make_error(ErrorKind::bad_patch, "{}: symbol '{}' is referenced by loaded code but lives in section {} which is not loaded",
                          o.label(), sym_label(o, i), o.sections()[shndx].name);
      continue;
    }
    auto type = ELF64_ST_TYPE(s.st_info);
    if (type != STT_SECTION && type != STT_FILE && !o.symbol_name(i).empty())
      out_->symbols_.push_back({std::string(o.symbol_name(i)), sym_addr_[i], s.st_size, static_cast<unsigned char>(type),
                                static_cast<unsigned char>(ELF64_ST_BIND(s.st_info))});
  }

  // GOT slots hold the symbols' addresses; veneers jump through a slot of their own.
  uint64_t slot = got_index_.size();
  for (auto& [sym, index] : got_index_) std::memcpy(out_->mem_.ptr(got_off_ + 8 * index), &sym_addr_[sym], 8);
  for (auto& [sym, index] : veneer_index_) {
    uint64_t slot_addr = got + 8 * (slot + index);
    std::memcpy(out_->mem_.ptr(slot_addr - base), &sym_addr_[sym], 8);
    uint64_t v = base + veneer_off_ + kVeneerSize * index;
    auto insn = x86::encode_jmp_indirect_rip(v, slot_addr);
    if (!insn) return make_error(ErrorKind::internal, "veneer at {:#x} cannot reach its slot at {:#x}", v, slot_addr);
    std::memcpy(out_->mem_.ptr(v - base), insn->data(), insn->size());
    out_->mem_.ptr(v - base)[6] = 0xcc;
    out_->mem_.ptr(v - base)[7] = 0xcc;
  }
  return ok_result();
}

Error ObjectLoader::reloc_error(const Error& e, const Elf64_Rela& r, size_t sec) const {
  const auto& o = *obj_;
  size_t sym = ELF64_R_SYM(r.r_info);
  return Error(e.kind, fmt::format("{}: {} against symbol '{}' in {}+{:#x}: {}", o.label(), relocation_name(ELF64_R_TYPE(r.r_info)),
                                   sym_label(o, sym), o.sections()[sec].name, r.r_offset, e.message));
}

Result<void> ObjectLoader::apply_relocations() {
  const auto& o = *obj_;
  const uint64_t base = out_->mem_.addr();
  const uint64_t got = base + got_off_;
  for (size_t sec = 0; sec < o.sections().size(); ++sec) {
    if (sec_off_[sec] < 0) continue;
    uint64_t sec_size = o.sections()[sec].hdr.sh_size;
    for (const auto& r : o.relocations_for(sec)) {
      uint32_t type = ELF64_R_TYPE(r.r_info);
      size_t sym = ELF64_R_SYM(r.r_info);
      uint64_t width = x86::relocation_width(type);
      if (r.r_offset > sec_size || width > sec_size - r.r_offset)
        return reloc_error(Error(ErrorKind::bad_patch, "the relocated field lies outside the section"), r, sec);
      RelocInputs in;
      in.type = type;
      in.P = base + static_cast<uint64_t>(sec_off_[sec]) + r.r_offset;
      in.place = out_->mem_.ptr(in.P - base);
      in.S = sym_addr_[sym];
      in.A = r.r_addend;
      in.GOT = got;
      if (auto it = got_index_.find(sym); it != got_index_.end()) in.G = got + 8 * it->second;
      if ((type == R_X86_64_PLT32 || type == R_X86_64_PC32) && veneer_index_.count(sym)) {
        int64_t d = static_cast<int64_t>(in.S + static_cast<uint64_t>(in.A) - in.P);
        if (d < INT32_MIN || d > INT32_MAX) in.S = base + veneer_off_ + kVeneerSize * veneer_index_[sym];
      }
      LG_TRY(bool rewritten, try_rewrite_data_ref(in, sec));
      if (rewritten) continue;
      auto res = apply_relocation(in);
      if (!res) return reloc_error(res.error(), r, sec);
    }
  }
  return ok_result();
}

// A PC32 reference to external data that the 32-bit field cannot reach goes through the symbol's
// GOT slot instead (src/x86/data_reference.h); one that reaches is left as the compiler made it.
Result<bool> ObjectLoader::try_rewrite_data_ref(const RelocInputs& in, size_t sec) {
  if (in.type != R_X86_64_PC32) return false;
  auto it = data_ref_at_.find({sec, in.P - out_->mem_.addr() - static_cast<uint64_t>(sec_off_[sec])});
  if (it == data_ref_at_.end()) return false;
  int64_t d = static_cast<int64_t>(in.S + static_cast<uint64_t>(in.A) - in.P);
  if (d >= INT32_MIN && d <= INT32_MAX) return false;
  const auto& ref = opts_.data_refs[it->second];
  const uint64_t base = out_->mem_.addr();
  uint64_t insn_addr = base + static_cast<uint64_t>(sec_off_[sec]) + ref.insn;
  uint64_t thunk = base + data_thunk_off_ + x86::kDataRefThunkSize * static_cast<uint64_t>(std::distance(data_ref_at_.begin(), it));
  bool used_thunk = false;
  bool ok = in.G && (ref.kind == x86::DataRefKind::generic
                         ? x86::rewrite_generic_data_ref(out_->mem_.ptr(insn_addr - base), ref.len, insn_addr, ref, in.G,
                                                         out_->mem_.ptr(thunk - base), thunk)
                         : x86::rewrite_data_ref(out_->mem_.ptr(insn_addr - base), ref.len, insn_addr, ref.kind, in.A,
                                                 in.G, out_->mem_.ptr(thunk - base), thunk, used_thunk));
  if (!ok)
    return make_error(ErrorKind::unsupported, "{}: the {} at {}+{:#x} reaches external data out of +-2 GiB and cannot be rewritten",
                      obj_->label(), x86::to_string(ref.kind), obj_->sections()[sec].name, ref.insn);
  return true;
}

uint64_t ObjectLoader::thunk_eh_bytes() const {
  std::vector<x86::ThunkFde> fdes;
  for (const auto& t : thunk_code_)
    if (!t.code.empty() && !t.cfa_program.empty()) fdes.push_back({0, t.code.size(), &t.cfa_program});
  bool any = false;
  for (const auto& p : opts_.entry_thunks) any |= static_cast<bool>(p);
  return any ? x86::encode_thunk_eh_frame(0, fdes).size() : 0;
}

Result<void> ObjectLoader::layout_entry_thunks() {
  thunk_off_.assign(opts_.entry_thunks.size(), 0);
  thunk_slot_off_.assign(opts_.entry_thunks.size(), 0);
  thunk_eh_size_ = thunk_eh_bytes();
  if (!thunk_eh_size_) return ok_result();
  auto& text = group_size_[static_cast<int>(Group::text)];
  auto& data = group_size_[static_cast<int>(Group::data)];
  for (size_t i = 0; i < opts_.entry_thunks.size(); ++i) {
    if (!opts_.entry_thunks[i]) continue;
    text = align_up(text, 16);
    thunk_off_[i] = text;
    text += thunk_code_[i].code.size();
    data = align_up(data, 8);
    thunk_slot_off_[i] = data;
    data += 8;
  }
  if (eh_frame_sec_ < 0) {  // no .eh_frame of its own: the thunks' CFI stands alone
    auto& ro = group_size_[static_cast<int>(Group::rodata)];
    ro = align_up(ro, 8);
    thunk_eh_off_ = ro;
    ro += thunk_eh_size_ + 4;
  }
  return ok_result();
}

Result<void> ObjectLoader::place_entry_thunks() {
  out_->thunks_.assign(opts_.entry_thunks.size(), {});
  if (!thunk_eh_size_) return ok_result();
  const uint64_t base = out_->mem_.addr();
  std::vector<x86::ThunkFde> fdes;
  for (size_t i = 0; i < opts_.entry_thunks.size(); ++i) {
    if (!opts_.entry_thunks[i]) continue;
    uint64_t addr = base + group_start_[static_cast<int>(Group::text)] + thunk_off_[i];
    uint64_t slot = base + group_start_[static_cast<int>(Group::data)] + thunk_slot_off_[i];
    auto& t = thunk_code_[i];
    if (!x86::set_thunk_call_target(t, addr, slot))
      return make_error(ErrorKind::internal, "entry thunk at {:#x} cannot reach its slot at {:#x}", addr, slot);
    std::memcpy(out_->mem_.ptr(addr - base), t.code.data(), t.code.size());
    out_->thunks_[i] = {addr, slot};
    out_->regions_.push_back({"[entry thunk]", addr, t.code.size(), PROT_READ | PROT_EXEC});
    fdes.push_back({addr, t.code.size(), &t.cfa_program});
  }
  uint64_t at;
  if (eh_frame_sec_ >= 0) {
    at = base + static_cast<uint64_t>(sec_off_[eh_frame_sec_]) + obj_->sections()[eh_frame_sec_].hdr.sh_size;
  } else {
    at = base + group_start_[static_cast<int>(Group::rodata)] + thunk_eh_off_;
  }
  auto eh = x86::encode_thunk_eh_frame(at, fdes);
  if (eh.size() != thunk_eh_size_) return make_error(ErrorKind::internal, "entry thunk CFI changed size");
  std::memcpy(out_->mem_.ptr(at - base), eh.data(), eh.size());  // the zero terminator follows (fresh pages)
  uint64_t lo = out_->eh_frame_ ? out_->eh_frame_->lo.value : at;
  out_->eh_frame_ = RemoteRange{RemoteAddr(lo), RemoteAddr(at + eh.size())};
  return ok_result();
}

void LoadedObject::set_entry_thunk_target(size_t i, uint64_t target) {
  if (i < thunks_.size() && thunks_[i].slot) std::memcpy(reinterpret_cast<void*>(thunks_[i].slot), &target, 8);
}

Result<void> ObjectLoader::protect() {
  for (int g = 0; g < static_cast<int>(Group::count); ++g) {
    uint64_t size = page_up(group_size_[g]);
    if (!size) continue;
    if (::mprotect(out_->mem_.ptr(group_start_[g]), size, group_prot(static_cast<Group>(g))) != 0)
      return make_errno_error(ErrorKind::io, "mprotect of the patch's pages at {:#x}", out_->mem_.addr() + group_start_[g]);
  }
  return ok_result();
}

void ObjectLoader::collect_init_fini() {
  const auto& o = *obj_;
  // 2. .init_array.N sections run by increasing priority N before plain .init_array; .ctors
  //    run from last to first (the linker would reverse them into .init_array).
  std::vector<std::pair<std::string, size_t>> inits, finis;
  std::vector<size_t> ctors, dtors;
  for (size_t i = 0; i < o.sections().size(); ++i) {
    if (sec_off_[i] < 0) continue;
    const auto& s = o.sections()[i];
    std::string_view n = s.name;
    if (s.hdr.sh_type == SHT_INIT_ARRAY || n.starts_with(".init_array")) inits.emplace_back(std::string(n), i);
    else if (s.hdr.sh_type == SHT_FINI_ARRAY || n.starts_with(".fini_array")) finis.emplace_back(std::string(n), i);
    else if (n == ".ctors" || n.starts_with(".ctors.")) ctors.push_back(i);
    else if (n == ".dtors" || n.starts_with(".dtors.")) dtors.push_back(i);
  }
  auto prio_less = [](const auto& a, const auto& b) {
    bool ap = a.first.size() > 11, bp = b.first.size() > 11;  // ".init_array" is 11 chars
    if (ap != bp) return ap;                                   // prioritized first
    return a.first < b.first;
  };
  std::stable_sort(inits.begin(), inits.end(), prio_less);
  std::stable_sort(finis.begin(), finis.end(), prio_less);
  auto entries = [&](size_t sec) {
    std::vector<uint64_t> v(o.sections()[sec].hdr.sh_size / 8);
    std::memcpy(v.data(), out_->mem_.ptr(static_cast<uint64_t>(sec_off_[sec])), v.size() * 8);
    return v;
  };
  for (auto& [n, sec] : inits)
    for (uint64_t f : entries(sec)) out_->init_.push_back(f);
  for (size_t sec : ctors) {
    auto v = entries(sec);
    out_->init_.insert(out_->init_.end(), v.rbegin(), v.rend());
  }
  // Destructors run in the reverse order of constructors.
  for (size_t sec : dtors)
    for (uint64_t f : entries(sec)) out_->fini_.push_back(f);
  for (auto it = finis.rbegin(); it != finis.rend(); ++it) {
    auto v = entries(it->second);
    out_->fini_.insert(out_->fini_.end(), v.rbegin(), v.rend());
  }
  // 0 and -1 are placeholders, not functions.
  auto bogus = [](uint64_t f) { return f == 0 || f == ~0ull; };
  std::erase_if(out_->init_, bogus);
  std::erase_if(out_->fini_, bogus);
}

// The relocated .eh_frame as the host's unwinder will read it: every FDE must describe code of
// this patch (the file's relocations said so; this checks what they produced).
Result<void> ObjectLoader::check_loaded_eh_frame() const {
  if (!out_->eh_frame_) return ok_result();
  const RemoteRange& eh = *out_->eh_frame_;
  std::span<const uint8_t> table(reinterpret_cast<const uint8_t*>(eh.lo.value), eh.size());
  const uint64_t lo = out_->code_lo_, hi = out_->code_hi_;
  auto in_code = [&](const elf::EhFrameFde& f) -> Result<void> {
    uint64_t pc = elf::eh_frame_pc_begin(f, eh.lo.value);
    if (pc < lo || pc > hi || f.pc_range > hi - pc)
      return make_error(ErrorKind::bad_patch, "its range [{:#x}, +{:#x}) is not code of the patch [{:#x}, {:#x})", pc, f.pc_range, lo, hi);
    return ok_result();
  };
  LG_TRY_VOID(elf::check_eh_frame(table, in_code, obj_->label()));
  return ok_result();
}

void ObjectLoader::register_eh_frame() {
  if (!out_->eh_frame_) return;
  // 3. The agent links libgcc statically: its own __register_frame would register into the
  //    agent's private unwinder. Exceptions thrown by host code walk the HOST's unwinder
  //    (libgcc_s.so.1), so look that one up. A C host without libgcc_s has no unwinder that
  //    could use the information; registration is then skipped (and reported by status).
  using RegisterFn = void (*)(void*);
  auto reg = reinterpret_cast<RegisterFn>(::dlsym(RTLD_DEFAULT, "__register_frame"));
  auto dereg = reinterpret_cast<RegisterFn>(::dlsym(RTLD_DEFAULT, "__deregister_frame"));
  if (!reg || !dereg) return;
  reg(reinterpret_cast<void*>(out_->eh_frame_->lo.value));
  out_->eh_registered_ = dereg;
}

LoadedObject::~LoadedObject() {
  run_destructors();
  if (eh_registered_) eh_registered_(reinterpret_cast<void*>(eh_frame_->lo.value));
}

void LoadedObject::run_constructors() {
  if (constructors_ran_) return;
  constructors_ran_ = true;
  for (uint64_t f : init_) reinterpret_cast<void (*)()>(f)();
}

void LoadedObject::run_destructors() {
  if (!constructors_ran_) return;
  constructors_ran_ = false;
  for (uint64_t f : fini_) reinterpret_cast<void (*)()>(f)();
}

std::vector<RemoteRange> LoadedObject::code_ranges() const {
  if (code_hi_ == code_lo_) return {};
  return {RemoteRange{RemoteAddr(code_lo_), RemoteAddr(code_hi_)}};
}

std::optional<RemoteRange> LoadedObject::section(std::string_view name) const {
  for (const auto& r : regions_)
    if (r.name == name) return RemoteRange{RemoteAddr(r.addr), RemoteAddr(r.addr + r.size)};
  return std::nullopt;
}

std::optional<DefinedSymbol> LoadedObject::find_symbol(std::string_view name) const {
  std::optional<DefinedSymbol> local;
  for (const auto& s : symbols_) {
    if (s.name != name) continue;
    if (s.bind != STB_LOCAL) return s;
    if (!local) local = s;
  }
  return local;
}

std::optional<DefinedSymbol> LoadedObject::function_at(uint64_t addr) const {
  for (const auto& s : symbols_)
    if (s.type == STT_FUNC && s.addr == addr) return s;
  return std::nullopt;
}

}  // namespace lg::agent
