-- Extend a live actor lease to now + ttl (after dg_actor_fence said it is live).
local function dg_actor_renew(lease_key, epoch, now_ms, ttl_ms)
  redis.call('HSET', lease_key, 'e:' .. epoch, now_ms + tonumber(ttl_ms))
  return now_ms + tonumber(ttl_ms)
end
