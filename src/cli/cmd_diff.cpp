// livegraft diff ORIG.o PATCHED.o -o OUT.o [--target BINARY] [--name NAME]
#include <iostream>
#include <memory>

#include "builder/diff.h"
#include "builder/emit.h"
#include "builder/report.h"
#include "builder/target.h"
#include "cli/output.h"

namespace lg::cli {

namespace {

struct DiffArgs {
  std::string orig, patched, output, target, name;
  bool json = false;
};

std::string stem(const std::string& path) {
  std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (auto dot = base.rfind('.'); dot != std::string::npos && dot > 0) base.resize(dot);
  return base;
}

}  // namespace

void add_diff_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto args = std::make_shared<DiffArgs>();
  auto* cmd = app.add_subcommand(
      "diff", "Compare an original and a patched object file (-ffunction-sections -fdata-sections) and write a patch object");
  cmd->add_option("orig", args->orig, "The original translation unit's object")->required()->check(CLI::ExistingFile);
  cmd->add_option("patched", args->patched, "The same file compiled with the fix")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", args->output, "Patch object to write (omit to only list the changes)");
  cmd->add_option("--target", args->target,
                  "The running program's binary: binds the patch to its build-id, computes old_sympos and "
                  "verifies the original's code against it")
      ->check(CLI::ExistingFile);
  cmd->add_option("--name", args->name, "Patch name (default: the output file's name)");
  cmd->add_flag("--json", args->json, "Print one JSON document on stdout");
  cmd->callback([args, &global, &exit_code] {
    if (args->json) global.json = true;
    std::optional<builder::TargetBinary> target;
    if (!args->target.empty()) {
      auto t = builder::load_target(args->target);
      if (!t) {
        exit_code = report_error(global, t.error());
        return;
      }
      target = std::move(t.value());
    }
    builder::DiffOptions opts{args->orig, args->patched, target ? &*target : nullptr};
    auto r = builder::diff_objects(opts);
    if (!r) {
      exit_code = report_error(global, r.error());
      return;
    }
    nlohmann::json j = builder::to_json(*r);
    if (!args->output.empty()) {
      builder::PatchMetadata meta;
      meta.name = builder::sanitize_patch_name(args->name.empty() ? stem(args->output) : args->name);
      if (target) {
        meta.build_id = target->build_id;
        meta.object_name = target->soname;
      }
      auto w = builder::emit_patch_object({&*r}, meta, args->output);
      if (!w) {
        exit_code = report_error(global, w.error(), j);
        return;
      }
      j["output"] = args->output;
      j["patch_name"] = meta.name;
    }
    if (global.json) return print_json_ok(j);
    std::cout << builder::format_text(*r);
    if (r->nothing_to_patch()) std::cout << "no function's code changed: nothing to patch\n";
    if (!args->output.empty()) std::cout << "wrote " << args->output << "\n";
  });
}

}  // namespace lg::cli
