/*
 * livegraft patch API, layout version 2 (readers accept version 1 too: below).
 *
 * A patch object is an ELF64 x86-64 relocatable object (ET_REL, compiled with -fPIC) whose
 * section ".livegraft" holds exactly one `struct livegraft_patch` (the root). The root points
 * (through ordinary R_X86_64_64 relocations) to arrays of objects and functions and to strings.
 * The controller reads it from the file by following those relocations; the agent reads it from
 * memory after loading. docs/patch-format.md documents every field; the sizes below are
 * static_assert'ed so that the builder, the controller and the agent agree.
 *
 * Writing a patch by hand (C or C++):
 *
 *   #include <livegraft/patch.h>
 *   static int fixed_parse(const char *s) { ... }
 *   static struct livegraft_func funcs[] = {
 *       LIVEGRAFT_FUNC("parse", fixed_parse),
 *       LIVEGRAFT_FUNC_POS("helper", 2, fixed_helper),   // 2nd local symbol named helper
 *   };
 *   static struct livegraft_object objects[] = {
 *       LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs),   // any build-id
 *   };
 *
 * A static variable or function of the target that has several definitions (one per file that
 * includes a header defining it) is reached through an undefined symbol of the patch that a
 * livegraft_sym entry binds to one of them:
 *
 *   extern int counter_of_b;                 // any name the patch does not define
 *   static struct livegraft_sym syms[] = { LIVEGRAFT_SYM("counter_of_b", "counter", 2) };
 *   ... LIVEGRAFT_OBJECT_SYMS(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs, syms) ...
 *   LIVEGRAFT_PATCH("fix-parse", 0, objects);
 *
 * Only one target object per patch is supported in versions 1 and 2 (the agent places the patch
 * within +-2 GiB of that object); more are refused with a clear error.
 */
#ifndef LIVEGRAFT_PATCH_H
#define LIVEGRAFT_PATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIVEGRAFT_MAGIC 0x5446524cu /* "LRFT" little-endian: 'L','R','F','T' */
#define LIVEGRAFT_LAYOUT_VERSION 2u
/* Version 1 is version 2 without livegraft_object.syms/nr_syms (its object is 72 bytes, with a
 * zero `reserved` where version 2 has `syms`): readers of version 2 read it as such. */
#define LIVEGRAFT_LAYOUT_VERSION_MIN 1u
#define LIVEGRAFT_SECTION ".livegraft"

/* The main executable of the process, as a livegraft_object name. */
#define LIVEGRAFT_MAIN_EXECUTABLE ((const char *)0)

/* livegraft_patch.flags */
#define LIVEGRAFT_PATCH_REPLACE (1u << 0) /* cumulative: replaces all earlier patches (reserved, v2) */
/* The patch may be applied and reverted with no consistency model at all (`--model immediate`):
 * its author states that old and new versions may run in one call chain, and that a thread
 * still inside old code (or inside the patch after a revert) is harmless. */
#define LIVEGRAFT_PATCH_IMMEDIATE (1u << 1)
/* The patch's new code keeps the address of one of its own new functions (a callback it
 * registers, a table): the program may still hold it after a revert, so a revert switches
 * back but keeps the patch's code and data mapped for the life of the process (no destructors,
 * its unwind info stays registered). `livegraft build` sets it when it sees such a reference. */
#define LIVEGRAFT_PATCH_KEEP_CODE (1u << 2)

/* One replaced function. 32 bytes. */
struct livegraft_func {
  const char *old_name;  /* symbol name in the target object (mangled for C++) */
  void *new_func;        /* the replacement, defined in this patch object */
  uint64_t old_sympos;   /* 0: the name must be unique; N>=1: the Nth symbol of that name, in
                            symbol-table order (like the kernel's old_sympos) */
  uint64_t flags;        /* reserved, 0 */
};

/* One undefined symbol of the patch bound to one definition of a name in the target object
 * (a static of one translation unit among several of that name). Version 2. 32 bytes. */
struct livegraft_sym {
  const char *name;      /* the undefined symbol of the patch object this entry resolves */
  const char *old_name;  /* the symbol's name in the target object */
  uint64_t old_sympos;   /* which definition of old_name, as for livegraft_func (0: the only one) */
  uint64_t flags;        /* reserved, 0 */
};

/* Callbacks for one target object (kernel livepatch pairing rules). Reserved in v1: must be
 * NULL; the agent refuses non-NULL callbacks until they are implemented. 32 bytes. */
struct livegraft_callbacks {
  int (*pre_patch)(void);
  void (*post_patch)(void);
  void (*pre_unpatch)(void);
  void (*post_unpatch)(void);
};

/* A system state {id, version} (reserved in v1: nr_states must be 0). 16 bytes. */
struct livegraft_state {
  uint64_t id;
  uint64_t version;
};

/* One target object. 80 bytes (72 in version 1, which ends with a zero `reserved` at 64). */
struct livegraft_object {
  const char *name;      /* NULL: the main executable; else a soname ("libz.so.1"), a file name
                            or an absolute path of a mapped file */
  const char *build_id;  /* lower-case hex GNU build-id the target must have, or NULL: any */
  const struct livegraft_func *funcs;
  uint64_t nr_funcs;
  struct livegraft_callbacks callbacks;
  const struct livegraft_sym *syms;  /* NULL or nr_syms entries: undefined symbols of the patch
                                        resolved by position instead of by name */
  uint64_t nr_syms;
};

/* The root, the only content of section ".livegraft". 80 bytes. */
struct livegraft_patch {
  uint32_t magic;          /* LIVEGRAFT_MAGIC */
  uint16_t version;        /* LIVEGRAFT_LAYOUT_VERSION */
  uint16_t size;           /* sizeof(struct livegraft_patch) */
  uint32_t flags;          /* LIVEGRAFT_PATCH_* */
  uint32_t nr_objects;
  const char *name;        /* unique patch name: [A-Za-z0-9_.-]{1,64} */
  const struct livegraft_object *objects;
  const struct livegraft_state *states; /* reserved, v1: NULL */
  uint64_t nr_states;      /* reserved, v1: 0 */
  uint64_t reserved[4];    /* 0 */
};

#ifdef __cplusplus
}
#define LIVEGRAFT_STATIC_ASSERT_ static_assert
#else
#define LIVEGRAFT_STATIC_ASSERT_ _Static_assert
#endif

LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_func) == 32, "livegraft_func layout");
LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_callbacks) == 32, "livegraft_callbacks layout");
LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_state) == 16, "livegraft_state layout");
LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_sym) == 32, "livegraft_sym layout");
LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_object) == 80, "livegraft_object layout");
LIVEGRAFT_STATIC_ASSERT_(sizeof(struct livegraft_patch) == 80, "livegraft_patch layout");

#define LIVEGRAFT_ARRAY_SIZE_(a) (sizeof(a) / sizeof((a)[0]))

#define LIVEGRAFT_FUNC_POS(old_name_, sympos_, new_func_) \
  { (old_name_), (void *)(new_func_), (uint64_t)(sympos_), 0 }
#define LIVEGRAFT_FUNC(old_name_, new_func_) LIVEGRAFT_FUNC_POS(old_name_, 0, new_func_)

#define LIVEGRAFT_OBJECT(name_, build_id_, funcs_) \
  { (name_), (build_id_), (funcs_), LIVEGRAFT_ARRAY_SIZE_(funcs_), { 0, 0, 0, 0 }, 0, 0 }
#define LIVEGRAFT_OBJECT_SYMS(name_, build_id_, funcs_, syms_)                            \
  { (name_), (build_id_), (funcs_), LIVEGRAFT_ARRAY_SIZE_(funcs_), { 0, 0, 0, 0 }, (syms_), \
    LIVEGRAFT_ARRAY_SIZE_(syms_) }
#define LIVEGRAFT_SYM(name_, old_name_, sympos_) { (name_), (old_name_), (uint64_t)(sympos_), 0 }

#define LIVEGRAFT_PATCH(name_, flags_, objects_)                                                \
  __attribute__((used, section(LIVEGRAFT_SECTION))) const struct livegraft_patch               \
      livegraft_patch_root = { LIVEGRAFT_MAGIC, LIVEGRAFT_LAYOUT_VERSION,                       \
                               (uint16_t)sizeof(struct livegraft_patch), (flags_),              \
                               (uint32_t)LIVEGRAFT_ARRAY_SIZE_(objects_), (name_), (objects_), \
                               0, 0, { 0, 0, 0, 0 } }

#endif /* LIVEGRAFT_PATCH_H */
