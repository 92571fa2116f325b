// End to end on a real program nobody here wrote: Debian's lua5.4 source package (about 30,000
// lines of C). Fetches the source (scripts/fetch-debian-source.sh; skipped when apt or the
// network is unavailable), builds it with Lua's own Makefile (`make linux`), runs the lua
// interpreter on tests/builder/real/lua5.4/service.lua (one answer per stdin line), builds
// the fix tests/builder/real/lua5.4/fix.diff (Lua 5.4.5's fix of utf8.codes accepting a
// spurious continuation byte) with `livegraft build`, applies it to the running interpreter
// (the agent injected, not preloaded), sees the fixed answer, reverts, sees the original one.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "run_command.h"

namespace fs = std::filesystem;

namespace {

using lg::builder_test::run;

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

// The interpreter running a script, talked to through pipes; killed on scope exit.
class Interpreter {
 public:
  Interpreter(const fs::path& lua, const fs::path& script) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(lua.c_str(), lua.c_str(), script.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Interpreter() {
    if (to_ >= 0) close(to_);
    if (from_ >= 0) close(from_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // Sends one request line and returns the answer line ("" on EOF or after 60 s).
  std::string request() {
    if (write(to_, "go\n", 3) != 3) return "";
    std::string line;
    while (true) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      pollfd p{from_, POLLIN, 0};
      if (poll(&p, 1, 60000) <= 0) return "";
      char buf[512];
      ssize_t n = read(from_, buf, sizeof buf);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buffer_;
};

}  // namespace

TEST(BuilderRealProgram, Lua54Utf8CodesFixBuiltAppliedAndRevertedInRunningInterpreter) {
  const fs::path livegraft = fs::path(LG_BINARY_DIR) / "livegraft";
  const std::string agent = LG_AGENT_PATH;
  if (!fs::exists(livegraft) || !fs::exists(agent)) GTEST_SKIP() << "livegraft or the agent is not built";
  const fs::path cases = fs::path(LG_BUILDER_CASES) / "real" / "lua5.4";
  const fs::path fetch = fs::path(LG_SOURCE_DIR) / "scripts" / "fetch-debian-source.sh";
  const char* cache_env = std::getenv("LIVEGRAFT_DEBIAN_SOURCES");
  const fs::path cache = cache_env && *cache_env ? fs::path(cache_env) : fs::path(LG_BINARY_DIR) / "debian-sources";

  std::string out;
  int rc = run(quote(fetch) + " lua5.4 " + quote(cache), &out);
  if (rc == 77) GTEST_SKIP() << "the lua5.4 Debian source package is unavailable (apt or the network): " << out;
  ASSERT_EQ(rc, 0) << out;
  std::string tree = out.substr(0, out.find_last_not_of('\n') + 1);
  tree = tree.substr(tree.find_last_of('\n') + 1);  // the last line names the unpacked tree
  ASSERT_TRUE(fs::is_directory(fs::path(tree) / "src")) << out;

  const fs::path work = fs::path(LG_BINARY_DIR) / "builder-real" / "lua5.4";
  const fs::path lua_tree = work / "lua";
  ASSERT_EQ(run(quote(cases / "prepare.sh") + " " + quote(tree) + " " + quote(lua_tree), &out), 0) << out;
  // The project's own build: upstream Lua's Makefile and flags.
  ASSERT_EQ(run("make -C " + quote(lua_tree) + " linux", &out), 0) << out;

  Interpreter lua(lua_tree / "src" / "lua", cases / "service.lua");
  ASSERT_GT(lua.pid(), 0);
  EXPECT_EQ(lua.request(), "#1 accepted 1:20013");

  const std::string pid = std::to_string(lua.pid());
  const fs::path fix = work / "fix.o";
  ASSERT_EQ(run(quote(livegraft) + " build --source " + quote(lua_tree) + " --diff " + quote(cases / "fix.diff") +
                    " --target /proc/" + pid + "/exe --build-command 'make linux' -o " + quote(fix),
                &out), 0) << out;
  // gcc keeps iter_aux out of line (two callers, iter_auxstrict and iter_auxlax): one function.
  EXPECT_NE(out.find("CHANGED iter_aux\n"), std::string::npos) << out;

  ASSERT_EQ(run(quote(livegraft) + " apply " + pid + " " + quote(fix) + " --agent " + quote(agent), &out), 0) << out;
  const std::string fixed = lua.request();
  EXPECT_TRUE(fixed.starts_with("#2 rejected ")) << fixed;
  EXPECT_NE(fixed.find("invalid UTF-8 code"), std::string::npos) << fixed;

  ASSERT_EQ(run(quote(livegraft) + " revert " + pid + " fix", &out), 0) << out;
  EXPECT_EQ(lua.request(), "#3 accepted 1:20013");
}
