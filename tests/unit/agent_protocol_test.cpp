// The agent's request handler and registry, in-process: a patch of a function of this test
// executable is loaded through JSON requests; the test performs the returned `writes` itself
// through /proc/self/mem (as the controller does through /proc/PID/mem) and observes the calls.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "agent/protocol.h"
#include "agent/test_helpers.h"
#include "common/hex.h"
#include "x86/encode.h"

using namespace lg;
using namespace lg::agent;
using namespace lg::agent::testing;
using nlohmann::json;

extern "C" __attribute__((noinline)) int lg_host_target(int x) {
  asm volatile("nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop");
  return x + 1;
}
extern "C" __attribute__((noinline)) int lg_host_other(int x) {
  asm volatile("nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop");
  return x - 1;
}

namespace {

int (*volatile target_ptr)(int) = lg_host_target;
int (*volatile other_ptr)(int) = lg_host_other;

std::string patch_source(const char* name, const char* body, const char* old_name = "lg_host_target") {
  return fmt::format(R"(
    #include <stddef.h>
    #include <livegraft/patch.h>
    static int fixed(int x) {{ {} }}
    static struct livegraft_func funcs[] = {{ LIVEGRAFT_FUNC("{}", fixed) }};
    static struct livegraft_object objects[] = {{ LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) }};
    LIVEGRAFT_PATCH("{}", 0, objects);
  )", body, old_name, name);
}

class ProtocolTest : public ::testing::Test {
 protected:
  std::string compile(const std::string& name, const std::string& src) {
    std::string log;
    std::string obj = compile_patch(dir_, name, src, Lang::c, &log);
    EXPECT_FALSE(obj.empty()) << log;
    return obj;
  }

  static json func_entry(const char* name, int (*fn)(int)) {
    uint64_t addr = reinterpret_cast<uint64_t>(fn);
    const uint8_t* code = reinterpret_cast<const uint8_t*>(addr);
    uint64_t jump = addr + x86::jump_offset(code, 16);
    return {{"old_name", name}, {"old_sympos", 0}, {"old_addr", addr}, {"jump_addr", jump},
            {"orig_bytes", to_hex({reinterpret_cast<const uint8_t*>(jump), 5})}};
  }

  json load_request(const std::string& path, json funcs) {
    auto r = self_object_range();
    return {{"op", "load"}, {"path", path}, {"object", {{"name", ""}, {"lo", r.lo.value}, {"hi", r.hi.value}}}, {"funcs", funcs},
            {"symbols", json::object()}, {"dlsym", json::array()}};
  }

  // The controller's part: verify every `old`, then write every `new`, through /proc/self/mem
  // (which writes through page protections, like ptrace).
  static void perform(const json& writes) {
    int fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    for (const auto& w : writes) {
      auto old = from_hex(w["old"].get<std::string>());
      ASSERT_TRUE(old);
      ASSERT_EQ(std::memcmp(reinterpret_cast<const void*>(w["addr"].get<uint64_t>()), old->data(), old->size()), 0) << w.dump();
    }
    for (const auto& w : writes) {
      auto bytes = from_hex(w["new"].get<std::string>());
      ASSERT_EQ(::pwrite(fd, bytes->data(), bytes->size(), static_cast<off_t>(w["addr"].get<uint64_t>())), static_cast<ssize_t>(bytes->size()));
    }
    ::close(fd);
  }

  json call(json req) {
    if (req.is_object() && !req.contains("v")) req["v"] = kProtocolVersion;
    return agent_.handle(req);
  }
  json op(const char* o, const std::string& name) { return call({{"op", o}, {"name", name}}); }

  TempDir dir_;
  Agent agent_;
};

TEST_F(ProtocolTest, HelloAndEmptyStatus) {
  auto h = call({{"op", "hello"}});
  EXPECT_EQ(h["ok"], true);
  EXPECT_EQ(h["protocol"], kProtocolVersion);
  EXPECT_EQ(h["v"], kProtocolVersion);
  EXPECT_EQ(h["pid"], ::getpid());
  EXPECT_TRUE(h["disabled"].is_null());
  EXPECT_TRUE(h["transition"].is_null());
  auto s = call({{"op", "status"}});
  EXPECT_EQ(s["ok"], true);
  EXPECT_TRUE(s["patches"].empty());
  EXPECT_TRUE(s["functions"].empty());
}

TEST_F(ProtocolTest, ApplyStackRevertInAnyOrderRestoresEverything) {
  auto v1 = compile("v1", patch_source("fix-v1", "return x * 100;"));
  auto v2 = compile("v2", patch_source("fix-v2", "return x * 1000;"));
  json funcs = json::array({func_entry("lg_host_target", lg_host_target)});
  std::string maps_before = self_maps_text();

  // First patch of the function: one entry write to a stub whose slot is already filled.
  auto r1 = call(load_request(v1, funcs));
  ASSERT_EQ(r1["ok"], true) << r1.dump();
  ASSERT_EQ(r1["writes"].size(), 1u);
  EXPECT_EQ(r1["writes"][0]["addr"], funcs[0]["jump_addr"]);
  EXPECT_EQ(r1["writes"][0]["old"], funcs[0]["orig_bytes"]);
  EXPECT_TRUE(r1["check"].empty());
  EXPECT_EQ(r1["patch"]["state"], "loaded");
  EXPECT_EQ(call({{"op", "hello"}})["transition"], "fix-v1");
  EXPECT_EQ(target_ptr(3), 4) << "nothing may change before the controller writes";
  auto st = call({{"op", "status"}});
  ASSERT_EQ(st["functions"].size(), 1u);
  uint64_t stub = st["functions"][0]["stub"];
  EXPECT_EQ(reinterpret_cast<int (*)(int)>(stub)(3), 300) << "the stub jumps to the new function";
  auto jmp = x86::encode_jmp_rel32(funcs[0]["jump_addr"], stub);
  EXPECT_EQ(r1["writes"][0]["new"], to_hex(*jmp));

  perform(r1["writes"]);
  EXPECT_EQ(target_ptr(3), 300);
  ASSERT_EQ(op("commit", "fix-v1")["ok"], true);
  st = call({{"op", "status"}});
  EXPECT_EQ(st["patches"][0]["state"], "enabled");
  EXPECT_EQ(st["functions"][0]["stack"], json::array({"fix-v1"}));

  // Second patch: only the slot changes, and the agent leaves that store to the controller.
  auto r2 = call(load_request(v2, funcs));
  ASSERT_EQ(r2["ok"], true) << r2.dump();
  ASSERT_EQ(r2["writes"].size(), 1u);
  EXPECT_EQ(r2["writes"][0]["addr"], st["functions"][0]["slot"]);
  uint64_t v1_new = st["patches"][0]["funcs"][0]["new_addr"];
  uint64_t v2_new = r2["patch"]["funcs"][0]["new_addr"];
  EXPECT_EQ(r2["writes"][0]["old"], to_hex({reinterpret_cast<const uint8_t*>(&v1_new), 8}));
  EXPECT_EQ(r2["writes"][0]["new"], to_hex({reinterpret_cast<const uint8_t*>(&v2_new), 8}));
  ASSERT_EQ(r2["check"].size(), 1u);
  EXPECT_EQ(r2["check"][0][0], v1_new) << "threads must not be in the current implementation";
  EXPECT_EQ(target_ptr(3), 300);
  perform(r2["writes"]);
  EXPECT_EQ(target_ptr(3), 3000);
  ASSERT_EQ(op("commit", "fix-v2")["ok"], true);
  EXPECT_EQ(call({{"op", "status"}})["functions"][0]["stack"], json::array({"fix-v1", "fix-v2"}));

  // Disable the lower patch first: no code changes, it just leaves the stack.
  auto rv1 = op("prepare_revert", "fix-v1");
  ASSERT_EQ(rv1["ok"], true) << rv1.dump();
  EXPECT_TRUE(rv1["writes"].empty());
  EXPECT_FALSE(rv1["check"].empty());
  ASSERT_EQ(op("finish_revert", "fix-v1")["ok"], true);
  EXPECT_EQ(target_ptr(3), 3000);
  EXPECT_EQ(call({{"op", "status"}})["functions"][0]["stack"], json::array({"fix-v2"}));

  // The last patch: the entry gets its original bytes back.
  auto rv2 = op("prepare_revert", "fix-v2");
  ASSERT_EQ(rv2["ok"], true) << rv2.dump();
  ASSERT_EQ(rv2["writes"].size(), 1u);
  EXPECT_EQ(rv2["writes"][0]["new"], funcs[0]["orig_bytes"]);
  perform(rv2["writes"]);
  EXPECT_EQ(target_ptr(3), 4);
  ASSERT_EQ(op("finish_revert", "fix-v2")["ok"], true);
  st = call({{"op", "status"}});
  EXPECT_TRUE(st["patches"].empty());
  EXPECT_TRUE(st["functions"].empty());
  EXPECT_EQ(maps_before, self_maps_text()) << "patches and stub pages must all be unmapped";
}

TEST_F(ProtocolTest, RevertOfTopPatchPointsSlotBackToThePreviousOne) {
  auto v1 = compile("a1", patch_source("fix-a1", "return x * 2;", "lg_host_other"));
  auto v2 = compile("a2", patch_source("fix-a2", "return x * 3;", "lg_host_other"));
  json funcs = json::array({func_entry("lg_host_other", lg_host_other)});
  for (auto [path, name] : {std::pair{v1, "fix-a1"}, std::pair{v2, "fix-a2"}}) {
    auto r = call(load_request(path, funcs));
    ASSERT_EQ(r["ok"], true) << r.dump();
    perform(r["writes"]);
    ASSERT_EQ(op("commit", name)["ok"], true);
  }
  EXPECT_EQ(other_ptr(5), 15);
  auto rv = op("prepare_revert", "fix-a2");
  ASSERT_EQ(rv["writes"].size(), 1u);
  perform(rv["writes"]);
  ASSERT_EQ(op("finish_revert", "fix-a2")["ok"], true);
  EXPECT_EQ(other_ptr(5), 10);
  rv = op("prepare_revert", "fix-a1");
  perform(rv["writes"]);
  ASSERT_EQ(op("finish_revert", "fix-a1")["ok"], true);
  EXPECT_EQ(other_ptr(5), 4);
}

TEST_F(ProtocolTest, OneTransitionAtATimeAndAbortLeavesNothing) {
  auto v1 = compile("b1", patch_source("fix-b1", "return -x;"));
  auto v2 = compile("b2", patch_source("fix-b2", "return -2 * x;"));
  json funcs = json::array({func_entry("lg_host_target", lg_host_target)});
  { auto warm = call(load_request(v1, funcs)); ASSERT_EQ(op("abort", "fix-b1")["ok"], true); }
  std::string before = self_maps_text();
  auto r1 = call(load_request(v1, funcs));
  ASSERT_EQ(r1["ok"], true) << r1.dump();
  auto r2 = call(load_request(v2, funcs));
  EXPECT_EQ(r2["ok"], false);
  EXPECT_EQ(r2["kind"], "busy");
  EXPECT_EQ(op("prepare_revert", "fix-b1")["kind"], "busy");
  EXPECT_EQ(op("commit", "fix-b2")["kind"], "not_found");
  ASSERT_EQ(op("abort", "fix-b1")["ok"], true);
  EXPECT_EQ(before, self_maps_text());
  EXPECT_EQ(target_ptr(3), 4);
  EXPECT_TRUE(call({{"op", "status"}})["functions"].empty());
}

// Layout version 2's bound symbols (livegraft_sym): the undefined symbol is resolved to the
// address the request gives under its name (the controller chose the definition); a version-1
// patch (72-byte object, no syms) still loads.
int lg_bound_copy = 40;
TEST_F(ProtocolTest, BoundSymbolAndLayoutVersionOnePatchesLoad) {
  auto bound = compile("bound", R"(
    #include <stddef.h>
    #include <livegraft/patch.h>
    extern int copy_of_b;
    static int fixed(int x) { return x + copy_of_b; }
    static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("lg_host_target", fixed) };
    static struct livegraft_sym syms[] = { LIVEGRAFT_SYM("copy_of_b", "counter", 2) };
    static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT_SYMS(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs, syms) };
    LIVEGRAFT_PATCH("fix-bound", 0, objects);
  )");
  json funcs = json::array({func_entry("lg_host_target", lg_host_target)});
  json req = load_request(bound, funcs);
  req["symbols"]["copy_of_b"] = reinterpret_cast<uint64_t>(&lg_bound_copy);
  auto r = call(req);
  ASSERT_EQ(r["ok"], true) << r.dump();
  auto st = call({{"op", "status"}});
  ASSERT_EQ(st["functions"].size(), 1u);
  EXPECT_EQ(reinterpret_cast<int (*)(int)>(st["functions"][0]["stub"].get<uint64_t>())(2), 42);
  ASSERT_EQ(op("abort", "fix-bound")["ok"], true);

  auto old = compile("v1layout", R"(
    #include <stddef.h>
    #include <livegraft/patch.h>
    static int fixed(int x) { return x * 7; }
    static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("lg_host_target", fixed) };
    struct v1_object { const char *name, *build_id; const struct livegraft_func *funcs; uint64_t nr_funcs;
                       struct livegraft_callbacks callbacks; uint64_t reserved; };
    static const struct v1_object objects[] = { { 0, 0, funcs, 1, { 0, 0, 0, 0 }, 0 } };
    __attribute__((used, section(".livegraft"))) const struct livegraft_patch root =
        { LIVEGRAFT_MAGIC, 1, 80, 0, 1, "fix-v1-layout", (const struct livegraft_object *)objects, 0, 0, {0, 0, 0, 0} };
  )");
  r = call(load_request(old, funcs));
  ASSERT_EQ(r["ok"], true) << r.dump();
  st = call({{"op", "status"}});
  ASSERT_EQ(st["functions"].size(), 1u);
  EXPECT_EQ(reinterpret_cast<int (*)(int)>(st["functions"][0]["stub"].get<uint64_t>())(3), 21);
  ASSERT_EQ(op("abort", "fix-v1-layout")["ok"], true);
  EXPECT_EQ(target_ptr(3), 4);
}

TEST_F(ProtocolTest, AbandonedTransitionsAreSettledFromTheAgentsOwnMemory) {
  auto v1 = compile("c1", patch_source("fix-c1", "return x + 1000;", "lg_host_other"));
  json funcs = json::array({func_entry("lg_host_other", lg_host_other)});
  // Controller gone before writing: the load is undone.
  ASSERT_EQ(call(load_request(v1, funcs))["ok"], true);
  agent_.connection_closed();
  EXPECT_TRUE(call({{"op", "hello"}})["transition"].is_null());
  EXPECT_TRUE(call({{"op", "status"}})["patches"].empty());
  EXPECT_EQ(other_ptr(5), 4);
  // Controller gone after writing: the apply is completed.
  auto r = call(load_request(v1, funcs));
  ASSERT_EQ(r["ok"], true) << r.dump();
  perform(r["writes"]);
  agent_.connection_closed();
  auto st = call({{"op", "status"}});
  ASSERT_EQ(st["patches"].size(), 1u);
  EXPECT_EQ(st["patches"][0]["state"], "enabled");
  EXPECT_EQ(other_ptr(5), 1005);
  // A revert abandoned after its writes is finished; nothing is left.
  auto rv = op("prepare_revert", "fix-c1");
  ASSERT_EQ(rv["ok"], true) << rv.dump();
  perform(rv["writes"]);
  agent_.connection_closed();
  EXPECT_TRUE(call({{"op", "status"}})["patches"].empty());
  EXPECT_EQ(other_ptr(5), 4);
  EXPECT_TRUE(call({{"op", "hello"}})["disabled"].is_null());
}

TEST_F(ProtocolTest, RequestThatDoesNotMatchThePatchIsRefusedCleanly) {
  auto v1 = compile("c1", patch_source("fix-c1", "return 0;"));
  { auto warm = call(load_request(v1, json::array({func_entry("lg_host_target", lg_host_target)}))); op("abort", "fix-c1"); }
  std::string before = self_maps_text();

  auto wrong_name = call(load_request(v1, json::array({func_entry("lg_host_other", lg_host_other)})));
  EXPECT_EQ(wrong_name["ok"], false);
  EXPECT_EQ(wrong_name["kind"], "mismatch") << wrong_name.dump();

  json f = func_entry("lg_host_target", lg_host_target);
  f["orig_bytes"] = "cccccccccc";
  auto wrong_bytes = call(load_request(v1, json::array({f})));
  EXPECT_EQ(wrong_bytes["kind"], "mismatch") << wrong_bytes.dump();

  auto req = load_request(v1, json::array({func_entry("lg_host_target", lg_host_target)}));
  req["object"]["name"] = "libz.so.1";
  auto wrong_object = call(req);
  EXPECT_EQ(wrong_object["kind"], "mismatch") << wrong_object.dump();

  EXPECT_EQ(before, self_maps_text());
  EXPECT_TRUE(call({{"op", "hello"}})["transition"].is_null());
}

TEST_F(ProtocolTest, MalformedRequestsAreAnsweredNotFatal) {
  EXPECT_EQ(json::parse(agent_.handle_line("{not json"))["kind"], "invalid_argument");
  EXPECT_EQ(call({{"op", "fly"}})["kind"], "invalid_argument");
  EXPECT_EQ(call({{"op", "load"}, {"path", "/x.o"}})["kind"], "invalid_argument");
  EXPECT_EQ(call(json::array({1, 2}))["kind"], "invalid_argument");
  EXPECT_TRUE(call({{"op", "hello"}})["disabled"].is_null());
}

// Hazard: a controller of another protocol version drives the agent with requests it reads
// differently. Every request but hello must carry this agent's version; the refusal names both.
TEST_F(ProtocolTest, RequestOfAnotherProtocolVersionIsRefusedNamingBoth) {
  for (json v : {json(), json(1), json(kProtocolVersion + 1), json("2")}) {
    json req = {{"op", "status"}};
    if (!v.is_null()) req["v"] = v;
    json r = agent_.handle(req);
    EXPECT_EQ(r["ok"], false) << r.dump();
    EXPECT_EQ(r["kind"], "version") << r.dump();
    EXPECT_EQ(r["v"], kProtocolVersion) << "the refusal says which version the agent speaks";
    std::string msg = r.value("error", "");
    EXPECT_NE(msg.find(fmt::format("this agent speaks protocol {}", kProtocolVersion)), std::string::npos) << msg;
    EXPECT_NE(msg.find(v.is_null() ? "none (protocol 1)" : v.is_string() ? "a string" : std::to_string(v.get<int>())), std::string::npos) << msg;
  }
  // A refused commit changes nothing either; hello is answered whatever the version.
  EXPECT_EQ(agent_.handle(json{{"op", "commit"}, {"name", "x"}, {"v", 1}})["kind"], "version");
  EXPECT_EQ(agent_.handle(json{{"op", "hello"}, {"v", 1}})["protocol"], kProtocolVersion);
  EXPECT_EQ(agent_.handle(json{{"op", "hello"}})["ok"], true);
}

TEST_F(ProtocolTest, DisabledAgentRefusesChangesButAnswersStatus) {
  agent_.disable("test reason");
  auto h = call({{"op", "hello"}});
  EXPECT_EQ(h["disabled"], "test reason");
  EXPECT_EQ(call({{"op", "status"}})["disabled"], "test reason");
  auto v1 = compile("d1", patch_source("fix-d1", "return 0;"));
  auto r = call(load_request(v1, json::array({func_entry("lg_host_target", lg_host_target)})));
  EXPECT_EQ(r["kind"], "agent");
  EXPECT_NE(r["error"].get<std::string>().find("test reason"), std::string::npos);
}

}  // namespace
