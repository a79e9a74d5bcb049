--- @include "dg_call_chunked"
-- Write a script's buffered hash fields with one variadic HSET (in slices): `order` lists
-- the fields in the order they were first written, `values` maps each to its value, and
-- `fmt` (optional) formats every value with string.format. A script deciding many requests
-- in one call keeps its writes in Lua and writes each hash once (a command per request and
-- hash was most of such a call's Redis commands).
local function dg_hset_fields(key, order, values, fmt)
  local args = {}
  for _, field in ipairs(order) do
    args[#args + 1] = field
    args[#args + 1] = fmt and string.format(fmt, values[field]) or values[field]
  end
  if #args > 0 then dg_call_chunked('HSET', key, args, 1000) end
end
