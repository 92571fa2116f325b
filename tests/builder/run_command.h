// Runs a shell command for the builder tests: its exit code, with stdout+stderr in *output.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace lg::builder_test {

inline int run(const std::string& cmd, std::string* output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string out;
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace lg::builder_test
