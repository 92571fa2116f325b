// The typed agent protocol (src/protocol/protocol.h): every message survives encode → decode,
// every malformed field is refused with its name, and versions are checked (hazard: "protocol
// untyped / version unchecked", docs/reliability.md).
#include <gtest/gtest.h>

#include <cctype>

#include "protocol/protocol.h"

using namespace lg;
using namespace lg::protocol;
using nlohmann::json;

namespace {

LoadRequest sample_load() {
  LoadRequest r;
  r.path = "/abs/fix.o";
  r.object_name = "libfoo.so.1";
  r.object = {RemoteAddr(0x1000), RemoteAddr(0x9000)};
  FuncRequest f;
  f.old_name = "parse";
  f.old_sympos = 2;
  f.old_addr = 0x1100;
  f.jump_addr = 0x1104;
  f.orig_bytes = {0x55, 0x48, 0x89, 0xe5, 0x90};
  f.preserve = 0x10003;
  f.preserve_vec = (uint64_t{1} << 56) | (uint64_t{1} << 17);  // zmm1, 64-bit masks
  f.old_ranges = {{RemoteAddr(0x1100), RemoteAddr(0x1180)}, {RemoteAddr(0x8000), RemoteAddr(0x8010)}};
  x86::ContinuationTemplate c;
  c.bytes = {0x48, 0x8d, 0x05, 0, 0, 0, 0, 0x90};
  c.fixups = {{3, 7, 0x5000}};
  c.resume = 0x1109;
  c.displaced = 5;
  f.continuation = c;
  r.funcs.push_back(f);
  FuncRequest g;
  g.old_name = "other";
  g.old_addr = g.jump_addr = 0x2000;
  g.orig_bytes = {1, 2, 3, 4, 5};
  r.funcs.push_back(g);
  r.symbols = {{"counter", 0x7000}, {"zero", 0}};
  r.dlsym_names = {"strlen", "malloc"};
  x86::DataRef lea;
  lea.section = 2;
  lea.offset = 8;
  lea.insn = 5;
  lea.len = 7;
  lea.kind = x86::DataRefKind::lea;
  x86::DataRef gen = lea;
  gen.kind = x86::DataRefKind::generic;
  gen.body = {0x8b, 0x80, 0, 0, 0, 0};
  gen.scratch = 11;
  r.data_refs = {lea, gen};
  r.model = Model::per_thread;
  return r;
}

Request round_trip(const Request& r) {
  json j = encode_request(r);
  // Through text, as on the wire.
  auto back = decode_request_line(j.dump());
  EXPECT_TRUE(back.ok()) << (back ? "" : back.error().message) << "\n" << j.dump();
  return back ? *back : Request{};
}

// The message a malformed request gets: names [field].
std::string refusal(json j) {
  auto r = decode_request(j);
  EXPECT_FALSE(r.ok()) << j.dump();
  if (r) return "";
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_argument) << r.error().message;
  return r.error().message;
}

json valid_load() { return encode_request(sample_load()); }

}  // namespace

TEST(ProtocolCodec, EveryOpHasOneNameBothWays) {
  for (Op op : {Op::hello, Op::status, Op::load, Op::prepare_revert, Op::commit, Op::abort, Op::finish_revert,
                Op::cancel_revert, Op::poke_begin, Op::poke_finish, Op::complete, Op::reverse, Op::force, Op::switch_early,
                Op::reclaim})
    EXPECT_EQ(op_from_string(to_string(op)), op) << to_string(op);
  EXPECT_FALSE(op_from_string("fly"));
}

TEST(ProtocolCodec, NamedRequestsRoundTrip) {
  std::vector<Request> all = {HelloRequest{}, StatusRequest{}, CommitRequest{"a"}, AbortRequest{"b"}, FinishRevertRequest{"c"},
                              CancelRevertRequest{"d"}, PokeBeginRequest{"e"}, PokeFinishRequest{"f"}, CompleteRequest{"g"},
                              ReverseRequest{"h"}, ForceRequest{"i"},
                              PrepareRevertRequest{"j", Model::per_thread}, PrepareRevertRequest{"k", Model::stop_the_world}};
  for (const auto& r : all) {
    json j = encode_request(r);
    EXPECT_EQ(j["v"], kVersion);
    EXPECT_EQ(j["op"], to_string(op_of(r)));
    Request back = round_trip(r);
    EXPECT_EQ(back.index(), r.index()) << j.dump();
    EXPECT_EQ(encode_request(back), j);
  }
  auto pr = std::get<PrepareRevertRequest>(round_trip(PrepareRevertRequest{"j", Model::per_thread}));
  EXPECT_EQ(pr.name, "j");
  EXPECT_EQ(pr.model, Model::per_thread);
  EXPECT_EQ(std::get<ForceRequest>(round_trip(ForceRequest{"x y"})).name, "x y");
}

TEST(ProtocolCodec, LoadRequestRoundTripsEveryField) {
  LoadRequest in = sample_load();
  auto out = std::get<LoadRequest>(round_trip(in));
  EXPECT_EQ(out.path, in.path);
  EXPECT_EQ(out.object_name, in.object_name);
  EXPECT_EQ(out.object.lo, in.object.lo);
  EXPECT_EQ(out.object.hi, in.object.hi);
  ASSERT_EQ(out.funcs.size(), 2u);
  const auto& f = out.funcs[0];
  EXPECT_EQ(f.old_name, "parse");
  EXPECT_EQ(f.old_sympos, 2u);
  EXPECT_EQ(f.old_addr, 0x1100u);
  EXPECT_EQ(f.jump_addr, 0x1104u);
  EXPECT_EQ(f.orig_bytes, in.funcs[0].orig_bytes);
  EXPECT_EQ(f.preserve, 0x10003u);
  EXPECT_EQ(f.preserve_vec, (uint64_t{1} << 56) | (uint64_t{1} << 17));
  ASSERT_EQ(f.old_ranges.size(), 2u);
  EXPECT_EQ(f.old_ranges[1].hi, RemoteAddr(0x8010));
  ASSERT_TRUE(f.continuation);
  EXPECT_EQ(f.continuation->bytes, in.funcs[0].continuation->bytes);
  ASSERT_EQ(f.continuation->fixups.size(), 1u);
  EXPECT_EQ(f.continuation->fixups[0].target, 0x5000u);
  EXPECT_EQ(f.continuation->resume, 0x1109u);
  EXPECT_EQ(f.continuation->displaced, 5u);
  EXPECT_FALSE(out.funcs[1].continuation);
  EXPECT_TRUE(out.funcs[1].old_ranges.empty());
  EXPECT_EQ(out.symbols, in.symbols);
  EXPECT_EQ(out.dlsym_names, in.dlsym_names);
  ASSERT_EQ(out.data_refs.size(), 2u);
  EXPECT_EQ(out.data_refs[0].kind, x86::DataRefKind::lea);
  EXPECT_EQ(out.data_refs[1].kind, x86::DataRefKind::generic);
  EXPECT_EQ(out.data_refs[1].body, in.data_refs[1].body);
  EXPECT_EQ(out.data_refs[1].scratch, 11);
  EXPECT_EQ(out.model, Model::per_thread);
  EXPECT_EQ(encode_request(out), encode_request(in));
}

TEST(ProtocolCodec, LoadDefaultsAsDocumented) {
  json j = {{"op", "load"}, {"v", kVersion}, {"path", "/x.o"}, {"object", {{"name", ""}, {"lo", 1}, {"hi", 2}}},
            {"funcs", {{{"old_name", "f"}, {"old_addr", 1}, {"orig_bytes", "0102030405"}}}}};
  auto r = decode_request(j);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& l = std::get<LoadRequest>(*r);
  EXPECT_EQ(l.funcs[0].jump_addr, 1u) << "jump_addr defaults to old_addr";
  EXPECT_EQ(l.funcs[0].old_sympos, 0u);
  EXPECT_EQ(l.funcs[0].preserve, 0u);
  EXPECT_EQ(l.funcs[0].preserve_vec, 0u);
  EXPECT_EQ(l.model, Model::stop_the_world);
  EXPECT_TRUE(l.symbols.empty() && l.dlsym_names.empty() && l.data_refs.empty());
}

// Each malformed field is refused with its name (the path into the request).
TEST(ProtocolCodec, EveryMalformedLoadFieldIsRefusedByName) {
  struct Case {
    const char* pointer;  // JSON pointer of the field to spoil
    json value;           // its new value (null: remove it)
    const char* named;    // what the message must name
  };
  const Case cases[] = {
      {"/path", "rel/fix.o", "'path'"},
      {"/path", 7, "'path'"},
      {"/path", nullptr, "'path'"},
      {"/object", "x", "'object'"},
      {"/object/name", 1, "'object.name'"},
      {"/object/lo", -1, "'object.lo'"},
      {"/object/hi", 0, "'object.hi'"},
      {"/funcs", json::object(), "'funcs'"},
      {"/funcs/0", 3, "'funcs[0]'"},
      {"/funcs/0/old_name", nullptr, "'funcs[0].old_name'"},
      {"/funcs/0/old_sympos", "2", "'funcs[0].old_sympos'"},
      {"/funcs/0/old_addr", 1.5, "'funcs[0].old_addr'"},
      {"/funcs/0/jump_addr", true, "'funcs[0].jump_addr'"},
      {"/funcs/1/orig_bytes", "0102", "'funcs[1].orig_bytes'"},
      {"/funcs/1/orig_bytes", "zz02030405", "'funcs[1].orig_bytes'"},
      {"/funcs/0/preserve", uint64_t{1} << 40, "'funcs[0].preserve'"},
      {"/funcs/0/old_ranges", json::array({json::array({5, 1})}), "'funcs[0].old_ranges[0]'"},
      {"/funcs/0/old_ranges", json::array({json::array({1})}), "'funcs[0].old_ranges[0]'"},
      {"/funcs/0/continuation", "x", "'funcs[0].continuation'"},
      {"/funcs/0/continuation/bytes", "", "'funcs[0].continuation.bytes'"},
      {"/funcs/0/continuation/fixups", 1, "'funcs[0].continuation.fixups'"},
      {"/funcs/0/continuation/fixups/0/offset", 6, "'funcs[0].continuation.fixups[0]'"},
      {"/funcs/0/continuation/fixups/0/end", nullptr, "'funcs[0].continuation.fixups[0].end'"},
      {"/funcs/0/continuation/resume", -4, "'funcs[0].continuation.resume'"},
      {"/funcs/0/continuation/displaced", uint64_t{1} << 33, "'funcs[0].continuation.displaced'"},
      {"/symbols", json::array(), "'symbols'"},
      {"/symbols/counter", "x", "'symbols.counter'"},
      {"/dlsym", "strlen", "'dlsym'"},
      {"/dlsym/0", 5, "'dlsym[0]'"},
      {"/data_refs", 5, "'data_refs'"},
      {"/data_refs/0", "x", "'data_refs[0]'"},
      {"/data_refs/0/section", -1, "'data_refs[0].section'"},
      {"/data_refs/0/len", 300, "'data_refs[0].len'"},
      {"/data_refs/0/kind", "store", "'data_refs[0].kind'"},
      {"/data_refs/1/body", "", "'data_refs[1].body'"},
      {"/data_refs/1/scratch", 16, "'data_refs[1].scratch'"},
      {"/model", "sometimes", "'model'"},
  };
  for (const auto& c : cases) {
    json j = valid_load();
    json::json_pointer p(c.pointer);
    if (c.value.is_null()) j[p.parent_pointer()].erase(p.back());
    else j[p] = c.value;
    std::string msg = refusal(j);
    EXPECT_NE(msg.find(c.named), std::string::npos) << c.pointer << ": " << msg;
    EXPECT_EQ(msg.rfind("malformed request: ", 0), 0u) << msg;
  }
}

TEST(ProtocolCodec, MalformedEnvelopesAreRefused) {
  EXPECT_NE(refusal(json::array({1})).find("JSON object"), std::string::npos);
  EXPECT_NE(refusal(json{{"v", kVersion}}).find("'op'"), std::string::npos);
  EXPECT_NE(refusal(json{{"op", 3}, {"v", kVersion}}).find("'op'"), std::string::npos);
  EXPECT_NE(refusal(json{{"op", "fly"}, {"v", kVersion}}).find("unknown op 'fly'"), std::string::npos);
  EXPECT_NE(refusal(json{{"op", "commit"}, {"v", kVersion}}).find("'name'"), std::string::npos);
  EXPECT_NE(refusal(json{{"op", "force"}, {"v", kVersion}, {"name", 1}}).find("'name'"), std::string::npos);
  EXPECT_NE(refusal(json{{"op", "prepare_revert"}, {"v", kVersion}, {"name", "x"}, {"model", 1}}).find("'model'"), std::string::npos);
  auto bad = decode_request_line("{\"op\":");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::invalid_argument);
}

TEST(ProtocolCodec, RequestOfAnotherVersionIsRefusedNamingBothVersions) {
  for (json v : {json(nullptr), json(1), json(kVersion + 1), json("2"), json(-1)}) {
    json j = encode_request(CommitRequest{"fix"});
    if (v.is_null()) j.erase("v");
    else j["v"] = v;
    auto r = decode_request(j);
    ASSERT_FALSE(r.ok()) << j.dump();
    EXPECT_EQ(r.error().kind, ErrorKind::version) << r.error().message;
    EXPECT_NE(r.error().message.find(fmt::format("this agent speaks protocol {}", kVersion)), std::string::npos) << r.error().message;
  }
  auto old = decode_request(json{{"op", "status"}});
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.error().message.find("none (protocol 1)"), std::string::npos) << old.error().message;
  auto next = decode_request(encode_request(StatusRequest{}, kVersion + 1));
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().message.find(fmt::format("speaks agent protocol {}", kVersion + 1)), std::string::npos);
  // hello is how a controller of any version learns the agent's.
  EXPECT_TRUE(decode_request(json{{"op", "hello"}}).ok());
  EXPECT_TRUE(decode_request(encode_request(HelloRequest{}, 1)).ok());
  // The version comes before the op: an unknown op of another version is a version error.
  EXPECT_EQ(decode_request(json{{"op", "fly"}, {"v", 1}}).error().kind, ErrorKind::version);
}

TEST(ProtocolCodec, ResponsesRoundTrip) {
  HelloResponse h{kVersion, 4242, std::string("stuck"), std::string("fix")};
  json hj = encode(h);
  EXPECT_EQ(response_version(hj), kVersion);
  auto hb = decode_hello(hj);
  ASSERT_TRUE(hb.ok()) << hb.error().message;
  EXPECT_EQ(hb->pid, 4242);
  EXPECT_EQ(hb->disabled, "stuck");
  EXPECT_EQ(hb->transition, "fix");
  EXPECT_EQ(encode(*hb), hj);

  PatchInfo p;
  p.name = "fix";
  p.path = "/abs/fix.o";
  p.state = PatchState::enabled;
  p.model = Model::per_thread;
  p.object = "";
  p.regions = {{".text", 0x100, 0x20, "r-x"}, {"[got]", 0x200, 8, "r--"}};
  p.code = {{RemoteAddr(0x100), RemoteAddr(0x120)}};
  p.eh_frame = EhFrame{0x300, 0x40, true};
  p.funcs = {{"parse", 0, 0x1100, 0x100, 0x20, std::nullopt}, {"other", 1, 0x2000, 0x110, 0x8, 0x150}};
  StatusResponse s;
  s.disabled = std::nullopt;
  s.patches = {p};
  s.functions = {{0x1100, 0x4000, 0x4008, 0x1104, {1, 2, 3, 4, 5}, {"a", "fix"}}};
  TransitionInfo t;
  t.patch = "fix";
  t.kind = TransitionKind::revert;
  t.model = Model::per_thread;
  t.per_thread = PerThreadTransition{7, true, false, Phase::switching, -64, 12, {{RemoteAddr(1), RemoteAddr(2)}}, {}, {{RemoteAddr(3), RemoteAddr(4)}}};
  s.transition = t;
  s.trap_redirects = 3;
  json sj = encode(s);
  auto sb = decode_status(sj);
  ASSERT_TRUE(sb.ok()) << sb.error().message;
  EXPECT_EQ(encode(*sb), sj);
  ASSERT_NE(sb->find_patch("fix"), nullptr);
  EXPECT_EQ(sb->find_patch("fix")->funcs[1].entry_thunk, 0x150u);
  EXPECT_EQ(sb->transition->per_thread->marker_offset, -64);
  EXPECT_EQ(sb->transition->per_thread->phase, Phase::switching);
  EXPECT_EQ(sb->find_patch("nope"), nullptr);
  // The code arena (docs/consistency.md, "Memory"); an agent without it leaves it out.
  s.arena = ArenaInfo{8192, 96, 64, 8032, 1, 9, 7, {{RemoteAddr(0x5000), RemoteAddr(0x5020)}}};
  json aj = encode(s);
  auto ab = decode_status(aj);
  ASSERT_TRUE(ab.ok()) << ab.error().message;
  EXPECT_EQ(encode(*ab), aj);
  ASSERT_TRUE(ab->arena);
  EXPECT_EQ(ab->arena->retired_upto, 9u);
  EXPECT_EQ(ab->arena->retired_ranges.size(), 1u);
  EXPECT_FALSE(decode_status(sj)->arena);
  // Reverted patches whose code stays mapped ("kept"): optional, and the unwinder's patches are
  // the applied ones and these.
  EXPECT_FALSE(sj.contains("kept"));
  EXPECT_TRUE(decode_status(sj)->kept.empty());
  PatchInfo gone = p;
  gone.name = "old-fix";
  s.kept = {gone};
  json kj = encode(s);
  auto kb = decode_status(kj);
  ASSERT_TRUE(kb.ok()) << kb.error().message;
  EXPECT_EQ(encode(*kb), kj);
  ASSERT_EQ(kb->kept.size(), 1u);
  EXPECT_EQ(kb->find_patch("old-fix"), nullptr);  // not applied
  ASSERT_EQ(kb->mapped_patches().size(), 2u);
  EXPECT_EQ(kb->mapped_patches()[1].name, "old-fix");
  kj["kept"] = 5;
  EXPECT_FALSE(decode_status(kj).ok());
  auto rb = decode_reclaim(encode(ReclaimResponse{64, 9}));
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  EXPECT_EQ(rb->freed, 64u);
  EXPECT_EQ(rb->reclaimed_upto, 9u);
  EXPECT_EQ(std::get<ReclaimRequest>(round_trip(ReclaimRequest{41})).upto, 41u);
  EXPECT_NE(refusal({{"op", "reclaim"}, {"v", kVersion}}).find("upto"), std::string::npos);
  StatusResponse empty;
  EXPECT_EQ(encode(*decode_status(encode(empty))), encode(empty));
  TransitionInfo stw{"fix", TransitionKind::apply, Model::stop_the_world, std::nullopt};
  empty.transition = stw;
  auto eb = decode_status(encode(empty));
  ASSERT_TRUE(eb.ok()) << eb.error().message;
  EXPECT_FALSE(eb->transition->per_thread);

  Plan plan;
  plan.writes = {{0x1104, {1, 2, 3, 4, 5}, {0xe9, 0, 0, 0, 0}}};
  plan.check = {{RemoteAddr(0x10), RemoteAddr(0x20)}};
  plan.per_thread = PerThreadPlan{9, -8, {{RemoteAddr(0x1105), RemoteAddr(0x1109)}}, {}};
  LoadResponse l{p, plan};
  json lj = encode(l);
  auto lb = decode_load(lj);
  ASSERT_TRUE(lb.ok()) << lb.error().message;
  EXPECT_EQ(encode(*lb), lj);
  PrepareRevertResponse pr{Plan{plan.writes, plan.check, std::nullopt}};
  auto prb = decode_prepare_revert(encode(pr));
  ASSERT_TRUE(prb.ok()) << prb.error().message;
  EXPECT_EQ(encode(*prb), encode(pr));
  EXPECT_FALSE(prb->plan.per_thread);
  EXPECT_TRUE(decode_ok(encode(OkResponse{})).ok());

  ErrorResponse e{ErrorKind::busy, "a transition is in progress"};
  auto eb2 = decode_error(encode(e));
  ASSERT_TRUE(eb2);
  EXPECT_EQ(eb2->kind, ErrorKind::busy);
  EXPECT_EQ(eb2->message, e.message);
  EXPECT_EQ(decode_error(encode(ErrorResponse{ErrorKind::version, "x"}))->kind, ErrorKind::version);
  EXPECT_FALSE(decode_error(encode(OkResponse{})));
  EXPECT_EQ(decode_error(json{{"ok", false}})->kind, ErrorKind::agent);
}

TEST(ProtocolCodec, MalformedRepliesAreRefusedByName) {
  StatusResponse s;
  PatchInfo p;
  p.name = "fix";
  s.patches = {p};
  s.functions = {{1, 2, 3, 4, {1, 2, 3, 4, 5}, {"fix"}}};
  const std::pair<const char*, json> cases[] = {
      {"/patches/0/name", 7},         {"/patches/0/state", "on"},    {"/patches/0/regions", "x"},
      {"/patches/0/code/0", 1},       {"/patches/0/eh_frame", 1},    {"/functions", "none"},
      {"/functions/0/orig_bytes", "01"}, {"/functions/0/stack/0", 1}, {"/transition", 1},
      {"/trap_redirects", "3"},       {"/disabled", 5},
  };
  for (const auto& [pointer, value] : cases) {
    json j = encode(s);
    j[json::json_pointer(pointer)] = value;
    auto r = decode_status(j);
    ASSERT_FALSE(r.ok()) << pointer;
    EXPECT_EQ(r.error().kind, ErrorKind::agent);
    std::string field = std::string(pointer).substr(1);
    // "/patches/0/name" is named "patches[0].name".
    std::string named;
    for (size_t i = 0; i < field.size();) {
      size_t e = field.find('/', i);
      std::string part = field.substr(i, e == std::string::npos ? std::string::npos : e - i);
      if (!part.empty() && std::isdigit(static_cast<unsigned char>(part[0]))) named += "[" + part + "]";
      else named += (named.empty() ? "" : ".") + part;
      if (e == std::string::npos) break;
      i = e + 1;
    }
    EXPECT_NE(r.error().message.find("'" + named), std::string::npos) << pointer << ": " << r.error().message;
  }
  EXPECT_FALSE(decode_load(encode(OkResponse{})).ok()) << "a load reply needs writes, check and patch";
  json lw = encode(LoadResponse{});
  lw["writes"] = json::array({{{"addr", 1}, {"old", "0102"}, {"new", "01"}}});
  EXPECT_NE(decode_load(lw).error().message.find("'writes[0]'"), std::string::npos);
  EXPECT_FALSE(decode_hello(json{{"ok", true}, {"protocol", "2"}}).ok());
  EXPECT_FALSE(response_version(json{{"ok", true}}));
  EXPECT_FALSE(response_version(json{{"ok", true}, {"v", "2"}}));
}

TEST(ProtocolCodec, PeekOpFindsTheOpCheaply) {
  EXPECT_EQ(peek_op(R"({"op":"status","v":2})"), Op::status);
  EXPECT_EQ(peek_op(R"({"op":"hello"})"), Op::hello);
  EXPECT_FALSE(peek_op(R"({"op":"fly"})"));
  EXPECT_FALSE(peek_op("{not json"));
  std::string long_load = encode_request(sample_load()).dump();
  ASSERT_GT(long_load.size(), 256u);
  EXPECT_EQ(peek_op(long_load), Op::load);
  std::string padded_status = R"({"op":"status","pad":")" + std::string(300, 'x') + "\"}";
  EXPECT_NE(peek_op(padded_status), Op::status) << "a long line is never taken for a read-only request";
}

TEST(ProtocolCodec, SocketPathAndUidRule) {
  EXPECT_EQ(socket_path(1000, 42), "/tmp/livegraft-1000/agent-42.sock");
  EXPECT_EQ(socket_uid(1000, 1000, 1000), 1000u);
  EXPECT_EQ(socket_uid(1000, 1000, 0), 0u);
  EXPECT_EQ(socket_uid(1000, 1001, 1000), 1001u);
  EXPECT_EQ(socket_uid(1000, 1000, 1002), 1002u);
}
