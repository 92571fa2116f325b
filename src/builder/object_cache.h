// The cache of original objects behind `livegraft build`: a user iterates (build, read the report,
// fix the patch, build again) and the original of each unit is the same compile every time, so it
// is compiled once and later builds take its object from the cache. See docs/builder.md.
//
// An entry is keyed by everything that decides the object:
//   - the compiler's identity: argv[0] as written, the file it resolves to (path, size, mtime),
//     its `-v` output, and the programs it runs (cc1/cc1plus/as by -print-prog-name), each by
//     path, size and mtime (a compile through a launcher, ccache and the like, is not cached);
//   - the exact compile (object_argv: the builder's flag rewriting done), its directory, with
//     the output path as a placeholder;
//   - the preprocessed input (`-E -dD` with the same flags: every included file, every macro);
//   - the environment variables the compiler reads (GCC_*, COMPILER_PATH, CPATH, ...).
// A compile whose object depends on anything else is not cached (uncacheable(): plugins, specs
// and response files, -B, profile files, split DWARF, coverage, .incbin/.include in inline
// assembly, ...). An entry carries its key, its size and a SHA-256 of the object: a damaged
// entry (truncated, overwritten) is detected, removed and counted as a miss.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "builder/compile_commands.h"
#include "common/result.h"

namespace lg::builder {

// SHA-256 of `data`, lower-case hex.
std::string sha256_hex(std::string_view data);

// $XDG_CACHE_HOME/livegraft/objects (an absolute XDG_CACHE_HOME), else $HOME/.cache/livegraft/
// objects; nullopt when neither is set.
std::optional<std::filesystem::path> default_object_cache_dir();
// $LIVEGRAFT_CACHE_SIZE in MiB (default 1024): the cache is kept under it, least recently used
// entries removed first.
uint64_t default_object_cache_bytes();

struct ObjectCacheKey {
  std::string hex;          // SHA-256 of `text`
  std::string text;         // what was hashed (written to the build log: why two keys differ)
  double preprocess_seconds = 0;
};

enum class CacheFetch { hit, miss, damaged };

class ObjectCache {
 public:
  ObjectCache(std::filesystem::path dir, uint64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}

  // The key of compiling `c` to an object (object_argv(c, ...)). Runs the compiler's
  // preprocessor and asks the compiler which programs it runs. Errors: the compile is not one to
  // cache (kind unsupported, the reason in the message) or the preprocessor failed (io).
  Result<ObjectCacheKey> key(const CompileCommand& c) const;

  // Writes the object of `key` to `object`. miss: no entry. damaged: the entry does not check
  // (size, SHA-256, header, not ELF): it is removed, *why says what was wrong, nothing written.
  CacheFetch fetch(const std::string& key, const std::filesystem::path& object, std::string* why) const;

  // Stores `object` under `key` (a temporary file renamed into place: a reader sees the whole
  // entry or none), then removes least recently used entries over the size bound.
  Result<void> store(const std::string& key, const std::filesystem::path& object) const;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path entry_path(const std::string& key) const;

 private:
  void trim() const;
  std::filesystem::path dir_;
  uint64_t max_bytes_;
};

// Why the object of `c` may depend on more than the key covers (an argument naming another input
// or the output path), or nullopt when it can be cached.
std::optional<std::string> uncacheable(const CompileCommand& c);

}  // namespace lg::builder
