// squid's base/Here.h, reduced: a header-defined static function (with static locals: its
// unit's cached file-name hash) whose address every Location of the unit holds. Each file that
// includes it has its own UnitCacher, cached and seen: one definition of each per file.
typedef unsigned Hasher(const char *);
typedef unsigned HashCacher(const char *, Hasher);
static HashCacher UnitCacher;
struct Location {
  explicit Location(const char *f) : file(f), cacher(&UnitCacher) {}
  unsigned id(Hasher h) const { return cacher(file, h); }
  const char *file;
  HashCacher *cacher;
};
static unsigned UnitCacher(const char *f, Hasher h) {
  static unsigned cached = 0;
  static const char *seen = nullptr;
  if (seen != f) {
    seen = f;
    cached = h(f);
  }
  return cached;
}
unsigned hash_name(const char *);
