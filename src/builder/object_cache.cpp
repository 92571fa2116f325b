#include "builder/object_cache.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>

extern char** environ;

namespace fs = std::filesystem;

namespace lg::builder {

namespace {

// SHA-256 (FIPS 180-4), streaming.
class Sha256 {
 public:
  void update(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0) {
      size_t take = std::min(n, sizeof block_ - used_);
      std::memcpy(block_ + used_, p, take);
      used_ += take;
      p += take;
      n -= take;
      if (used_ == sizeof block_) {
        compress(block_);
        used_ = 0;
      }
    }
  }
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string out;
    for (uint32_t h : h_) out += fmt::format("{:08x}", h);
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress(const uint8_t* b) {
    static constexpr std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(b[4 * i]) << 24 | uint32_t(b[4 * i + 1]) << 16 | uint32_t(b[4 * i + 2]) << 8 | uint32_t(b[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = bb, bb = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += bb, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t block_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

constexpr std::string_view kMagic = "livegraft-object-cache 1\n";

bool is_launcher(const std::string& a) {
  const std::string name = fs::path(a).filename().string();
  return name == "ccache" || name == "sccache" || name == "distcc" || name == "icecc";
}

// Runs `cmd` (a shell command line) with stderr dropped; its stdout goes to `sink`. The exit
// code, -1 when it could not run.
template <typename Sink>
int run_streaming(const std::string& cmd, Sink&& sink) {
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return -1;
  char buf[1 << 16];
  while (size_t n = fread(buf, 1, sizeof buf, p)) sink(std::string_view(buf, n));
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string run_output(const std::string& cmd) {
  std::string out;
  run_streaming(cmd + " 2>&1", [&](std::string_view s) { out.append(s); });
  return out;
}

std::string join_command(const std::string& dir, const std::vector<std::string>& argv) {
  std::string cmd = "cd " + shell_quote(dir) + " &&";
  for (const std::string& a : argv) cmd += " " + shell_quote(a);
  return cmd;
}

// What a program name means: where it resolves (relative to `dir` with a slash, else in $PATH
// as execvp would), the file it finally is, its size and modification time.
std::string program_identity(const std::string& name, const std::string& dir) {
  std::vector<fs::path> tries;
  if (name.find('/') != std::string::npos) {
    tries.push_back(fs::path(name).is_absolute() ? fs::path(name) : fs::path(dir) / name);
  } else if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');) tries.push_back(fs::path(d.empty() ? dir : d) / name);
  }
  for (const fs::path& p : tries) {
    if (access(p.c_str(), X_OK) != 0) continue;
    struct stat st {};
    if (stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    std::error_code ec;
    fs::path canon = fs::canonical(p, ec);
    return fmt::format("{} -> {} = {} size {} mtime {}.{:09}", name, p.string(), ec ? std::string("?") : canon.string(),
                       st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  return name + " (not found)";
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.hex();
}

std::optional<fs::path> default_object_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return fs::path(xdg) / "livegraft" / "objects";
  const char* home = std::getenv("HOME");
  if (home && *home == '/') return fs::path(home) / ".cache" / "livegraft" / "objects";
  return std::nullopt;
}

uint64_t default_object_cache_bytes() {
  uint64_t mib = 1024;
  if (const char* s = std::getenv("LIVEGRAFT_CACHE_SIZE"); s && *s) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (end && *end == '\0') mib = v;
  }
  return mib << 20;
}

std::optional<std::string> uncacheable(const CompileCommand& c) {
  if (c.argv.empty()) return "no compiler";
  for (size_t i = 1; i < c.argv.size(); ++i) {
    const std::string& a = c.argv[i];
    // Inputs the preprocessed text does not cover, or an object that names its own path.
    static const char* const prefixes[] = {
        "@",               "-B",          "-fplugin",       "-fpass-plugin",  "-specs",         "--specs",
        "-save-temps",     "-gsplit-dwarf", "-dumpbase",    "-dumpdir",       "-auxbase",       "-fprofile",
        "-fauto-profile",  "--coverage",  "-ftest-coverage", "-fcoverage",    "-fsanitize-blacklist",
        "-fsanitize-ignorelist", "-fsanitize-coverage-allowlist", "-fsanitize-coverage-ignorelist",
        "-frecord-gcc-switches", "-fcallgraph-info", "-Xclang",   "-wrapper",      "-fthinlto",      "-fembed-bitcode",
        "-fcreate-profile", "-fbranch-probabilities", "-fdump-final-insns", "-fcompare-debug"};
    for (const char* p : prefixes)
      if (a.starts_with(p)) return fmt::format("its argument {} names an input or output the key does not cover", a);
  }
  if (is_launcher(c.argv[0])) return fmt::format("it runs the compiler through {}", c.argv[0]);
  return std::nullopt;
}

Result<ObjectCacheKey> ObjectCache::key(const CompileCommand& c) const {
  if (auto why = uncacheable(c)) return make_error(ErrorKind::unsupported, "{}", *why);
  const std::string placeholder = "/livegraft-object-cache/OBJECT.o";
  const std::vector<std::string> argv = object_argv(c, placeholder);
  ObjectCacheKey k;
  std::string& t = k.text;
  t += kMagic;
  t += "directory " + c.directory + "\n";
  for (const std::string& a : argv) t += "arg " + shell_quote(a) + "\n";
  // The compiler and the programs it runs.
  const std::string& cc = argv[0];
  t += "compiler " + program_identity(cc, c.directory) + "\n";
  const std::string q = "cd " + shell_quote(c.directory) + " && " + shell_quote(cc);
  std::string v = run_output(q + " -v");
  std::replace(v.begin(), v.end(), '\n', ' ');
  t += "compiler -v " + v + "\n";
  for (const char* prog : {"cc1", "cc1plus", "as"}) {
    std::string p = run_output(q + " -print-prog-name=" + prog);
    while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
    t += fmt::format("runs {}: {}\n", prog, p.empty() ? std::string("(none)") : program_identity(p, c.directory));
  }
  // The environment the compiler reads.
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view s(*e);
    std::string_view name = s.substr(0, s.find('='));
    if (name.starts_with("GCC_") || name == "COMPILER_PATH" || name == "CPATH" || name.ends_with("_INCLUDE_PATH") ||
        name == "SOURCE_DATE_EPOCH" || name == "DEPENDENCIES_OUTPUT" || name == "SUNPRO_DEPENDENCIES" || name == "LANG" ||
        name.starts_with("LC_"))
      env.emplace_back(s);
  }
  std::sort(env.begin(), env.end());
  for (const std::string& e : env) t += "env " + e + "\n";
  // The preprocessed input: -c becomes -E -dD (the macros too: -g3 puts them in the object),
  // the output stdout.
  std::vector<std::string> pre(argv.begin(), argv.end() - 2);
  pre[1] = "-E";  // object_argv: "-c" second, "-o OBJECT" last
  pre.push_back("-dD");
  Sha256 h;
  std::string tail;
  bool assembler_reads = false;
  const auto t0 = std::chrono::steady_clock::now();
  int rc = run_streaming(join_command(c.directory, pre), [&](std::string_view s) {
    h.update(s);
    // An inline-assembly .incbin/.include reads a file the assembler finds, not the preprocessor.
    std::string window = tail + std::string(s.substr(0, std::min<size_t>(s.size(), 16)));
    if (s.find(".incbin") != std::string_view::npos || s.find(".include") != std::string_view::npos ||
        window.find(".incbin") != std::string::npos || window.find(".include") != std::string::npos)
      assembler_reads = true;
    tail = std::string(s.substr(s.size() > 16 ? s.size() - 16 : 0));
  });
  k.preprocess_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rc != 0) return make_error(ErrorKind::io, "the preprocessor failed (exit {})", rc);
  if (assembler_reads) return make_error(ErrorKind::unsupported, "its inline assembly includes a file (.incbin/.include)");
  t += "preprocessed " + h.hex() + "\n";
  k.hex = sha256_hex(t);
  return k;
}

fs::path ObjectCache::entry_path(const std::string& key) const { return dir_ / key.substr(0, 2) / (key + ".lgo"); }

CacheFetch ObjectCache::fetch(const std::string& key, const fs::path& object, std::string* why) const {
  const fs::path path = entry_path(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return CacheFetch::miss;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  auto damaged = [&](const std::string& what) {
    if (why) *why = fmt::format("the cache entry {} is damaged ({}): removed, compiling instead", path.string(), what);
    std::error_code ec;
    fs::remove(path, ec);
    return CacheFetch::damaged;
  };
  if (!std::string_view(data).starts_with(kMagic)) return damaged("no header");
  size_t pos = kMagic.size();
  auto line = [&](std::string_view field) -> std::optional<std::string> {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) return std::nullopt;
    std::string_view l(data.data() + pos, nl - pos);
    pos = nl + 1;
    if (!l.starts_with(field) || l.size() <= field.size() || l[field.size()] != ' ') return std::nullopt;
    return std::string(l.substr(field.size() + 1));
  };
  auto k = line("key"), size = line("size"), sum = line("sha256");
  if (!k || !size || !sum || pos >= data.size() || data[pos] != '\n') return damaged("a malformed header");
  ++pos;
  if (*k != key) return damaged("the key in it is another");
  std::string_view payload(data.data() + pos, data.size() - pos);
  if (*size != std::to_string(payload.size()))
    return damaged(fmt::format("{} bytes of object where the header says {}", payload.size(), *size));
  if (sha256_hex(payload) != *sum) return damaged("its SHA-256 does not match");
  if (!payload.starts_with("\x7f" "ELF")) return damaged("not an ELF object");
  {
    std::ofstream out(object, std::ios::binary | std::ios::trunc);
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    out.close();
    if (!out) {
      if (why) *why = fmt::format("writing {} from the cache failed: compiling instead", object.string());
      return CacheFetch::miss;
    }
  }
  std::error_code ec;
  fs::last_write_time(path, fs::file_time_type::clock::now(), ec);  // recently used
  return CacheFetch::hit;
}

Result<void> ObjectCache::store(const std::string& key, const fs::path& object) const {
  std::ifstream in(object, std::ios::binary);
  if (!in) return make_errno_error(ErrorKind::io, "read {}", object.string());
  std::string payload((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!std::string_view(payload).starts_with("\x7f" "ELF"))
    return make_error(ErrorKind::invalid_argument, "{} is not an ELF object", object.string());
  if (payload.size() > max_bytes_) return {};  // larger than the whole cache: not kept
  const fs::path path = entry_path(key);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return make_error(ErrorKind::io, "create {}: {}", path.parent_path().string(), ec.message());
  std::string tmp = (path.parent_path() / ".tmp-XXXXXX").string();
  int fd = mkstemp(tmp.data());
  if (fd < 0) return make_errno_error(ErrorKind::io, "create a file in {}", path.parent_path().string());
  std::string header = fmt::format("{}key {}\nsize {}\nsha256 {}\n\n", kMagic, key, payload.size(), sha256_hex(payload));
  bool ok = true;
  for (std::string_view part : {std::string_view(header), std::string_view(payload)}) {
    while (ok && !part.empty()) {
      ssize_t n = ::write(fd, part.data(), part.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ok = false;
      else part.remove_prefix(static_cast<size_t>(n));
    }
  }
  int saved = errno;
  if (::close(fd) != 0) ok = false;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    fs::remove(tmp, ec);
    errno = saved;
    return make_errno_error(ErrorKind::io, "write the cache entry {}", path.string());
  }
  trim();
  return {};
}

void ObjectCache::trim() const {
  struct Entry {
    fs::file_time_type time;
    uint64_t size;
    fs::path path;
  };
  std::vector<Entry> entries;
  uint64_t total = 0;
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (auto it = fs::recursive_directory_iterator(dir_, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    auto time = it->last_write_time(ec);
    if (ec) continue;
    if (name.starts_with(".tmp-")) {  // left by a build that died while storing
      if (now - time > std::chrono::hours(1)) fs::remove(it->path(), ec);
      continue;
    }
    if (!name.ends_with(".lgo")) continue;
    uint64_t size = it->file_size(ec);
    if (ec) continue;
    entries.push_back({time, size, it->path()});
    total += size;
  }
  if (total <= max_bytes_) return;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.time < b.time; });
  for (const Entry& e : entries) {
    if (total <= max_bytes_) break;
    if (fs::remove(e.path, ec)) total -= e.size;
  }
}

}  // namespace lg::builder
