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
echo "== 2. a variant of the fix that logs with fprintf() is refused: the server's main() keeps a value"
echo "      in a register across its call to check_access() (GCC -fipa-ra), and fprintf would clobber it"
"$lg" apply "$server" build/examples/fix_with_logging.o || echo "   (refused, exit code $?; the server is untouched)"
echo "== 3. apply the register-safe fix live: $lg apply $server build/examples/fix.o"
"$lg" apply "$server" build/examples/fix.o
echo "== 4. same process, fixed code: mallory is denied, the request counter kept counting"
show 1.5
echo "== 5. what is applied: $lg status $server"
"$lg" status "$server"
echo "== 6. revert: $lg revert $server fix-guest-access"
"$lg" revert "$server" fix-guest-access
echo "== 7. the original behaviour is back (same pid $server, never restarted)"
show 1.5
kill "$server"
echo "demo finished"
