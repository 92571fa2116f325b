#include "agent/universe.h"

#include <link.h>

#include <atomic>
#include <cstring>

#include "agent/text_poke.h"

namespace lg::agent {

namespace {

// 1. Non-zero initializers keep the block in .tdata (part of the TLS initialization image),
//    not .tbss (zero-filled): the image is what we change for threads born later. The magic
//    finds the marker inside the image.
constexpr uint64_t kMagic = 0x5245564e55474cull;  // "LGUNVER"
struct alignas(16) UniverseTls {
  uint64_t magic;
  uint64_t marker;
};
__thread UniverseTls g_tls __attribute__((tls_model("initial-exec"))) = {kMagic, kNoTransition};

uint64_t* g_image_marker = nullptr;  // the marker inside the TLS initialization image

uint64_t thread_pointer() {
  uint64_t tp;
  asm volatile("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

int find_image(dl_phdr_info* info, size_t, void* data) {
  auto self = reinterpret_cast<uint64_t>(&marker_tp_offset);
  bool ours = false;
  const ElfW(Phdr)* tls = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && self >= info->dlpi_addr + ph.p_vaddr && self < info->dlpi_addr + ph.p_vaddr + ph.p_memsz) ours = true;
    if (ph.p_type == PT_TLS) tls = &ph;
  }
  if (!ours || !tls) return 0;
  auto* image = reinterpret_cast<const uint8_t*>(info->dlpi_addr + tls->p_vaddr);
  for (uint64_t off = 0; off + 16 <= tls->p_filesz; off += 8) {
    uint64_t v;
    std::memcpy(&v, image + off, 8);
    if (v == kMagic) {
      *static_cast<uint64_t**>(data) = reinterpret_cast<uint64_t*>(const_cast<uint8_t*>(image + off + 8));
      return 1;
    }
  }
  return 1;
}

}  // namespace

int32_t marker_tp_offset() {
  return static_cast<int32_t>(static_cast<int64_t>(reinterpret_cast<uint64_t>(&g_tls.marker) - thread_pointer()));
}

uint64_t own_marker() { return std::atomic_ref<uint64_t>(g_tls.marker).load(std::memory_order_relaxed); }
void set_own_marker(uint64_t v) { std::atomic_ref<uint64_t>(g_tls.marker).store(v, std::memory_order_relaxed); }

Result<void> set_newborn_marker(uint64_t v) {
  if (!g_image_marker) {
    dl_iterate_phdr(find_image, &g_image_marker);
    if (!g_image_marker) return make_error(ErrorKind::agent, "cannot find the agent's TLS initialization image");
  }
  // 2. The image usually lies in the RELRO part of the agent (read-only after relocation):
  //    write it through /proc/self/mem. An aligned 8-byte write is one store.
  return write_code(reinterpret_cast<uint64_t>(g_image_marker), {reinterpret_cast<const uint8_t*>(&v), 8});
}

uint64_t newborn_marker() {
  if (!g_image_marker) dl_iterate_phdr(find_image, &g_image_marker);
  return g_image_marker ? std::atomic_ref<uint64_t>(*g_image_marker).load(std::memory_order_relaxed) : kNoTransition;
}

}  // namespace lg::agent
