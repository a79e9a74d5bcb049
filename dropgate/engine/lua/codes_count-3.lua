--[[
  Count a campaign pool of one type by status at one instant of Redis time. An
  expired reservation counts as available, before any reserve returns it.
  O(log n): SCARD and ZCOUNT, never a scan. Read only.
  KEYS[1] available set       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:available
  KEYS[2] reserved zset       <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:reserved
  KEYS[3] assigned set        <prefix>:{pN}:t:<tenant>:codes:<campaign>:type:<type>:assigned
  Returns {"available": n, "reserved": n, "assigned": n}
  Errors: none
  Writes nothing.
]]
--- @include "dg_now_ms"
local now = dg_now_ms()
local expired = redis.call('ZCOUNT', KEYS[2], '-inf', now)
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
return '{"available":' .. (redis.call('SCARD', KEYS[1]) + expired) .. ',"reserved":' .. live ..
  ',"assigned":' .. redis.call('SCARD', KEYS[3]) .. '}'
