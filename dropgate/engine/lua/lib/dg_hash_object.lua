-- A hash as a JSON-ready table of its string fields (absent hash: nil).
local function dg_hash_object(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local obj = {}
  for i = 1, #flat, 2 do obj[flat[i]] = flat[i + 1] end
  return obj
end
