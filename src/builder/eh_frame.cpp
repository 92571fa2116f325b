#include "builder/eh_frame.h"

#include <cstring>
#include <map>

namespace lg::builder {

namespace {

uint32_t read32(const std::vector<uint8_t>& d, size_t off) {
  uint32_t v;
  std::memcpy(&v, d.data() + off, 4);
  return v;
}

}  // namespace

Result<EhFrameSubset> eh_frame_subset(const Object& obj, const std::set<size_t>& text_sections) {
  EhFrameSubset out;
  const Section* eh = nullptr;
  for (const Section& s : obj.sections)
    if (s.name == ".eh_frame") eh = &s;
  if (!eh || eh->data.empty()) return out;
  const auto& d = eh->data;

  std::map<uint64_t, const Relocation*> relocs;  // by offset
  for (const Relocation& r : eh->relocations) relocs[r.offset] = &r;

  std::map<size_t, size_t> cie_moved;  // old CIE offset -> new offset
  auto copy_record = [&](size_t off, size_t len) {
    size_t at = out.bytes.size();
    out.bytes.insert(out.bytes.end(), d.begin() + off, d.begin() + off + len);
    for (auto it = relocs.lower_bound(off); it != relocs.end() && it->first < off + len; ++it) {
      Relocation r = *it->second;
      r.offset = r.offset - off + at;
      out.relocations.push_back(r);
    }
    return at;
  };

  for (size_t off = 0; off + 4 <= d.size();) {
    uint32_t length = read32(d, off);
    if (length == 0) break;
    if (length == 0xffffffffu)
      return make_error(ErrorKind::unsupported, "{}: 64-bit .eh_frame records are not supported", obj.path);
    size_t total = 4 + static_cast<size_t>(length);
    if (off + total > d.size() || length < 4)
      return make_error(ErrorKind::bad_patch, "{}: malformed .eh_frame record at offset {}", obj.path, off);
    uint32_t id = read32(d, off + 4);
    if (id != 0) {  // an FDE: does its pc_begin point into an included text section?
      auto it = relocs.find(off + 8);
      if (it != relocs.end()) {
        const Symbol& s = obj.symbols[it->second->symbol];
        if (text_sections.count(s.shndx)) {
          size_t cie_off = off + 4 - id;
          auto moved = cie_moved.find(cie_off);
          if (moved == cie_moved.end()) {
            if (cie_off + 4 > d.size())
              return make_error(ErrorKind::bad_patch, "{}: .eh_frame FDE at {} names a CIE out of range", obj.path, off);
            size_t cie_len = 4 + static_cast<size_t>(read32(d, cie_off));
            moved = cie_moved.emplace(cie_off, copy_record(cie_off, cie_len)).first;
          }
          size_t at = copy_record(off, total);
          uint32_t new_id = static_cast<uint32_t>(at + 4 - moved->second);
          std::memcpy(out.bytes.data() + at + 4, &new_id, 4);
        }
      }
    }
    off += total;
  }
  if (!out.bytes.empty()) out.bytes.insert(out.bytes.end(), 4, 0);
  return out;
}

}  // namespace lg::builder

namespace lg::builder {

namespace {

struct Reader {
  const std::vector<uint8_t>& d;
  size_t at;
  bool ok = true;
  uint8_t u8() {
    if (at >= d.size()) return ok = false, 0;
    return d[at++];
  }
  uint64_t uleb() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = u8();
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80) || !ok) break;
    }
    return v;
  }
  int64_t sleb() {
    int64_t v = 0;
    int shift = 0;
    uint8_t b;
    do {
      b = u8();
      v |= int64_t{b & 0x7f} << shift;
      shift += 7;
    } while ((b & 0x80) && ok && shift < 64);
    if (shift < 64 && (b & 0x40)) v |= -(int64_t{1} << shift);
    return v;
  }
  void skip(size_t n) { at + n <= d.size() ? at += n : (ok = false, at = d.size()); }
  std::string str() {
    std::string s;
    while (ok && at < d.size() && d[at]) s += static_cast<char>(d[at++]);
    u8();
    return s;
  }
  // An encoded value of the sizes GCC uses (DW_EH_PE_absptr/udata4/sdata4/udata8/uleb128).
  std::optional<uint64_t> encoded(uint8_t enc) {
    switch (enc & 0x0f) {
      case 0x01: return uleb();
      case 0x03: case 0x0b: { uint32_t v = read32(d, at); skip(4); return v; }
      case 0x00: case 0x04: case 0x0c: { uint64_t v; std::memcpy(&v, d.data() + at, 8); skip(8); return v; }
      default: return std::nullopt;
    }
  }
  size_t encoded_size(uint8_t enc) const {
    switch (enc & 0x0f) {
      case 0x03: case 0x0b: return 4;
      case 0x00: case 0x04: case 0x0c: return 8;
      case 0x02: case 0x0a: return 2;
      default: return 0;
    }
  }
};

}  // namespace

std::optional<bool> call_site_terminates(const Object& obj, size_t text_section, uint64_t site) {
  const Section* eh = nullptr;
  for (const Section& s : obj.sections)
    if (s.name == ".eh_frame") eh = &s;
  if (!eh || eh->data.empty()) return std::nullopt;
  const auto& d = eh->data;
  std::map<uint64_t, const Relocation*> relocs;
  for (const Relocation& r : eh->relocations) relocs[r.offset] = &r;
  for (size_t off = 0; off + 8 <= d.size();) {
    uint32_t length = read32(d, off);
    if (length == 0 || length == 0xffffffffu || off + 4 + length > d.size()) return std::nullopt;
    size_t next = off + 4 + length;
    uint32_t id = read32(d, off + 4);
    auto pc = relocs.find(off + 8);
    if (id == 0 || pc == relocs.end() || obj.symbols[pc->second->symbol].shndx != text_section) {
      off = next;
      continue;
    }
    const Symbol& base = obj.symbols[pc->second->symbol];
    const uint64_t start = base.value + static_cast<uint64_t>(pc->second->addend);  // the function's offset
    // The CIE: where the FDE's augmentation data keeps the LSDA pointer.
    size_t cie = off + 4 - id;
    if (cie + 9 > d.size()) return std::nullopt;
    Reader c{d, cie + 8};
    uint8_t version = c.u8();
    std::string aug = c.str();
    c.uleb();
    c.sleb();
    if (version == 1) c.u8();
    else c.uleb();
    uint8_t fde_enc = 0, lsda_enc = 0xff;
    if (!aug.starts_with("z")) return false;  // no augmentation data: no LSDA
    c.uleb();
    for (char ch : aug.substr(1)) {
      if (ch == 'R') fde_enc = c.u8();
      else if (ch == 'L') lsda_enc = c.u8();
      else if (ch == 'P') { uint8_t e = c.u8(); c.skip(c.encoded_size(e)); }
      else if (ch != 'S') return std::nullopt;
    }
    if (!c.ok) return std::nullopt;
    if (lsda_enc == 0xff) return false;
    Reader f{d, off + 8};
    size_t ptr = f.encoded_size(fde_enc);
    if (!ptr) return std::nullopt;
    f.skip(2 * ptr);
    f.uleb();  // augmentation data length
    auto lsda_rel = relocs.find(f.at);
    if (lsda_rel == relocs.end()) return false;  // a null LSDA pointer
    const Symbol& ls = obj.symbols[lsda_rel->second->symbol];
    const Section* lsec = obj.section_of(ls);
    if (!lsec) return std::nullopt;
    Reader l{lsec->data, static_cast<size_t>(ls.value + static_cast<uint64_t>(lsda_rel->second->addend))};
    uint8_t lp_enc = l.u8();
    if (lp_enc != 0xff) return std::nullopt;  // a landing-pad base other than the function: not GCC's
    if (l.u8() != 0xff) l.uleb();             // type table offset
    uint8_t cs_enc = l.u8();
    uint64_t cs_len = l.uleb();
    size_t end = l.at + cs_len;
    const uint64_t at = site - start;
    while (l.ok && l.at < end) {
      auto s = l.encoded(cs_enc), n = l.encoded(cs_enc), lp = l.encoded(cs_enc);
      l.uleb();
      if (!s || !n || !lp) return std::nullopt;
      if (*s <= at && at < *s + *n) return false;
    }
    return l.ok ? std::optional<bool>(true) : std::nullopt;
  }
  return std::nullopt;
}

}  // namespace lg::builder
