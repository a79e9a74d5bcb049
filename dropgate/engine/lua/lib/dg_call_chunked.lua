-- Run `cmd key args...` over a long argument list in slices of at most `per`
-- arguments (Lua's unpack stops near 8,000 values). Array replies (HMGET,
-- SMISMEMBER) come back concatenated in order; other replies are dropped.
local function dg_call_chunked(cmd, key, args, per)
  local out = {}
  local n = #args
  local i = 1
  while i <= n do
    local j = math.min(i + per - 1, n)
    local r = redis.call(cmd, key, unpack(args, i, j))
    if type(r) == 'table' then
      for k = 1, #r do out[#out + 1] = r[k] end
    end
    i = j + 1
  end
  return out
end
