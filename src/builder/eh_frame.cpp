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
