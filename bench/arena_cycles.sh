#!/usr/bin/env bash
# Usage: bench/arena_cycles.sh BUILD N1 N2 ... (MODEL=stop-the-world to switch the model;
# LIVEGRAFT_TEST_NO_RECLAIM=1 to measure without giving back): apply/revert cycles of arena_fix on a running
# arena_cycler (4 threads), printing the agent's code arena after each listed cycle count.
set -u
b=$(cd "$1" && pwd); shift
fifo=$(mktemp -u); mkfifo "$fifo"; err=$(mktemp)
sleep 100000 > "$fifo" & feeder=$!
"$b/targets/arena_cycler" < "$fifo" > /dev/null & pid=$!
sleep 0.5
n=0
for want in "$@"; do
  while [ $n -lt $want ]; do
    "$b/livegraft" apply --model "${MODEL:-per-thread}" "$pid" "$b/patches/arena_fix.o" > /dev/null 2>"$err" || { echo "apply $n failed"; cat "$err"; }
    "$b/livegraft" revert --model "${MODEL:-per-thread}" "$pid" arena-fix > /dev/null 2>"$err" || { echo "revert $n failed"; cat "$err"; }
    n=$((n+1))
  done
  echo "after $n cycles: $("$b/livegraft" --json status "$pid" | python3 -c 'import json,sys; a=json.load(sys.stdin)["arena"]; print("mapped",a["mapped"],"in_use",a["in_use"],"retired",a["retired"],"free",a["free"])')"
done
kill $pid $feeder; rm -f "$fifo" "$err"
