--[[
  Could a user redeem an invite code now? The redeem script's checks, in its order,
  changing nothing (no write, no event): answers the refusal it would give, or null.
  KEYS[1] invite hash         <prefix>:{pN}:t:<tenant>:invite:<code>
  KEYS[2] used-by set         <prefix>:{pN}:t:<tenant>:invite:<code>:users
  ARGV[1] code   ARGV[2] user id
  Returns {"reason": null | "INACTIVE" | "EXPIRED" | "ALREADY_USED" | "EXHAUSTED"}
  Errors: NOT_FOUND
  Writes nothing.
]]
--- @include "dg_error"
--- @include "dg_now_ms"
local inv = redis.call('HMGET', KEYS[1], 'active', 'expires_at_ms', 'max_uses', 'used_count')
if inv[1] == false then return dg_error('NOT_FOUND', {code = ARGV[1]}) end
local function answer(reason) return '{"reason":' .. (reason and ('"' .. reason .. '"') or 'null') .. '}' end
if inv[1] ~= '1' then return answer('INACTIVE') end
local expires = tonumber(inv[2])
if expires ~= nil and dg_now_ms() >= expires then return answer('EXPIRED') end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return answer('ALREADY_USED') end
local max_uses, used = tonumber(inv[3]), tonumber(inv[4])
if max_uses > 0 and used >= max_uses then return answer('EXHAUSTED') end
return answer(nil)
