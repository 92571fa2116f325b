// Thread start functions: a function passed to pthread_create() runs for the whole life of the
// thread it starts, so a patch that changes it cannot switch that thread (its stack always holds
// the function) until the thread ends. `livegraft build` warns about such a change, as it does
// for main() (docs/builder.md, "Warnings at build time").
#pragma once

#include <map>
#include <string>

#include "common/result.h"

namespace lg::builder {

// The functions of the ET_REL object at [path] whose address a function of the same object takes
// (a relocation that is not the operand of a call or jump) while also calling pthread_create:
// start function -> the function that starts it. A start routine passed on through another
// function's parameter (create_worker(func)) is not seen.
Result<std::map<std::string, std::string>> thread_start_functions(const std::string& path);

}  // namespace lg::builder
