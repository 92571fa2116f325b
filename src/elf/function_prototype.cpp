#include "elf/function_prototype.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <fmt/format.h>

namespace lg {

namespace {

enum class Class { integer, sse, integer2, memory, unknown };

// 1. psABI §3.2.3 classification, conservatively: scalars, pointers and references are INTEGER
//    or SSE; a 16-byte integer takes two INTEGER registers; long double and every aggregate
//    passed by value count as unknown (aggregates of <= 16 bytes may be split over registers,
//    and C++ passes non-trivial classes by invisible reference: not worth guessing).
Class classify(Dwarf_Die* type_die, std::string& what) {
  Dwarf_Die peeled;
  if (dwarf_peel_type(type_die, &peeled) != 0) return Class::unknown;
  int tag = dwarf_tag(&peeled);
  Dwarf_Word size = 0;
  Dwarf_Attribute attr;
  if (dwarf_attr_integrate(&peeled, DW_AT_byte_size, &attr)) dwarf_formudata(&attr, &size);
  switch (tag) {
    case DW_TAG_pointer_type:
    case DW_TAG_reference_type:
    case DW_TAG_rvalue_reference_type:
    case DW_TAG_ptr_to_member_type:
    case DW_TAG_enumeration_type:
      return size > 8 ? Class::unknown : Class::integer;
    case DW_TAG_base_type: {
      Dwarf_Word enc = 0;
      if (dwarf_attr_integrate(&peeled, DW_AT_encoding, &attr)) dwarf_formudata(&attr, &enc);
      if (enc == DW_ATE_float) {
        if (size == 4 || size == 8) return Class::sse;
        what = "a long double";
        return Class::memory;
      }
      if (enc == DW_ATE_complex_float) {
        what = "a complex number";
        return Class::unknown;
      }
      if (size <= 8) return Class::integer;
      if (size == 16) return Class::integer2;
      return Class::unknown;
    }
    default:
      what = "an aggregate passed by value";
      return Class::unknown;
  }
}

// The DIE describing the function's parameters: the definition, or what it refers to.
bool find_in(Dwarf_Die* parent, uint64_t vaddr, Dwarf_Die* out, int depth) {
  Dwarf_Die child;
  if (depth > 8 || dwarf_child(parent, &child) != 0) return false;
  do {
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_namespace && find_in(&child, vaddr, out, depth + 1)) return true;
    if (tag != DW_TAG_subprogram) continue;
    Dwarf_Addr low = 0;
    if ((dwarf_lowpc(&child, &low) == 0 || dwarf_entrypc(&child, &low) == 0) && low == vaddr) {
      *out = child;
      return true;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

bool find_subprogram(Dwarf* dbg, uint64_t vaddr, Dwarf_Die* out) {
  Dwarf_Die cu;
  if (!dwarf_addrdie(dbg, vaddr, &cu)) return false;
  return find_in(&cu, vaddr, out, 0);
}

}  // namespace

ArgumentPassing argument_passing(const ElfFile& elf, uint64_t vaddr) {
  ArgumentPassing out;
  Dwarf* dbg = dwarf_begin_elf(elf.raw(), DWARF_C_READ, nullptr);
  if (!dbg) {
    out.why = "the target has no DWARF to tell how it takes its arguments";
    return out;
  }
  Dwarf_Die fn;
  if (!find_subprogram(dbg, vaddr, &fn)) {
    dwarf_end(dbg);
    out.why = "its DWARF prototype was not found";
    return out;
  }
  // The concrete definition may carry its parameters itself (DW_AT_abstract_origin on each), or
  // only through DW_AT_abstract_origin / DW_AT_specification of the function.
  Dwarf_Die with_params = fn;
  for (int hops = 0; hops < 4; ++hops) {
    Dwarf_Die c;
    bool has_params = false;
    if (dwarf_child(&with_params, &c) == 0) do {
        int t = dwarf_tag(&c);
        if (t == DW_TAG_formal_parameter || t == DW_TAG_unspecified_parameters) has_params = true;
      } while (!has_params && dwarf_siblingof(&c, &c) == 0);
    if (has_params) break;
    Dwarf_Attribute a;
    Dwarf_Die origin;
    if ((dwarf_attr(&with_params, DW_AT_abstract_origin, &a) || dwarf_attr(&with_params, DW_AT_specification, &a)) &&
        dwarf_formref_die(&a, &origin)) {
      with_params = origin;
      continue;
    }
    break;  // no parameters at all
  }
  int ints = 0, sses = 0, n = 0;
  std::string why;
  Dwarf_Die rt;
  // A return value in memory takes rdi for its address.
  Dwarf_Attribute ra;
  if (dwarf_attr_integrate(&fn, DW_AT_type, &ra) && dwarf_formref_die(&ra, &rt)) {
    std::string what;
    Class c = classify(&rt, what);
    if (c == Class::sse) out.returns_in_xmm = true;
    if (c == Class::integer2) out.returns_in_rdx = true;
    if (c == Class::memory || c == Class::unknown) {
      ++ints;  // maybe a hidden pointer
      out.returns_in_rdx = out.returns_in_xmm = true;
    }
  }
  Dwarf_Die c;
  if (dwarf_child(&with_params, &c) == 0) do {
      int t = dwarf_tag(&c);
      if (t == DW_TAG_unspecified_parameters) {
        why = "it is variadic";
        break;
      }
      if (t != DW_TAG_formal_parameter) continue;
      ++n;
      Dwarf_Attribute a;
      Dwarf_Die type;
      if (!dwarf_attr_integrate(&c, DW_AT_type, &a) || !dwarf_formref_die(&a, &type)) {
        why = fmt::format("the type of its argument {} is unknown", n);
        break;
      }
      std::string what;
      switch (classify(&type, what)) {
        case Class::integer: ++ints; break;
        case Class::integer2: ints += 2; break;
        case Class::sse: ++sses; break;
        case Class::memory:
          why = fmt::format("its argument {} ({}) is passed on the stack", n, what);
          break;
        case Class::unknown:
          why = fmt::format("livegraft cannot tell whether its argument {} ({}) is passed on the stack", n,
                            what.empty() ? "of an unusual type" : what);
          break;
      }
      if (!why.empty()) break;
      if (ints > 6 || sses > 8) {
        why = fmt::format("its argument {} is passed on the stack (more than 6 integer or 8 floating-point arguments)", n);
        break;
      }
    } while (dwarf_siblingof(&c, &c) == 0);
  dwarf_end(dbg);
  out.why = why;
  out.registers_only = why.empty();
  return out;
}

}  // namespace lg
