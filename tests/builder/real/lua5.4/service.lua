-- A long-lived Lua program: one request per line on stdin, one answer per line on stdout.
-- Each request walks, with utf8.codes, a string whose last byte is a spurious UTF-8
-- continuation byte ("\x80" after the complete sequence of U+4E2D). Lua 5.4.4 accepts it
-- (the bug Lua 5.4.5 fixed); the fixed iter_aux rejects it with "invalid UTF-8 code".
local served = 0
for _ in io.lines() do
  served = served + 1
  local ok, res = pcall(function()
    local out = {}
    for p, c in utf8.codes("\xe4\xb8\xad\x80") do out[#out + 1] = p .. ":" .. c end
    return table.concat(out, ",")
  end)
  io.write(string.format("#%d %s %s\n", served, ok and "accepted" or "rejected", tostring(res)))
  io.flush()
end
