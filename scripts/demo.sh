#!/usr/bin/env bash
# The demo: builds livegraft, starts a small service with a security bug, fixes it live, shows
# the new behaviour, reverts, shows the old behaviour again. The service never restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
lg=build/livegraft
log=$(mktemp)
build/examples/demo_server >>"$log" 2>&1 &   # >>: the log can be emptied while it runs
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
show() { sleep "$1"; echo "--- server output ---"; cat "$log"; : >"$log"; echo "---------------------"; }

echo "== 1. the service runs with a bug: guest 'mallory' (level 3) is GRANTED access"
show 1.5
echo "== 2. apply the fix live, thread by thread (per-thread model): $lg apply $server build/examples/fix.o"
"$lg" apply "$server" build/examples/fix.o
echo "== 3. same process, fixed code: mallory is denied, the request counter kept counting"
show 1.5
echo "== 4. what is applied: $lg status $server"
"$lg" status "$server"
echo "== 5. revert: $lg revert $server fix-guest-access"
"$lg" revert "$server" fix-guest-access
echo "== 6. the original behaviour is back (same pid $server, never restarted)"
show 1.5
echo "== 7. a variant of the fix that logs with fprintf(): the server's main() keeps a value in a"
echo "      register across its call to check_access() (GCC -fipa-ra) that fprintf would clobber, so"
echo "      livegraft enters it through a thunk that keeps those registers"
"$lg" apply "$server" build/examples/fix_with_logging.o | head -1
"$lg" --json status "$server" | python3 -c 'import json,sys; f=json.load(sys.stdin)["patches"][0]["funcs"][0]; print("   %s enters the replacement through the entry thunk at %#x" % (f["old_name"], f.get("entry_thunk", 0)))'
show 1.5
name=$("$lg" --json status "$server" | python3 -c 'import json,sys; print(json.load(sys.stdin)["patches"][0]["name"])')
"$lg" revert "$server" "$name"
kill "$server"
echo "demo finished"
