--[[
  A tenant actor's lease with a fencing epoch. Each activation takes its own epoch
  (HINCRBY on a counter that never resets) and a lease expiring at now + ttl; the
  critical scripts refuse an epoch whose lease is gone or lapsed (dg_actor_fence),
  so an activation paused or partitioned past its TTL can never commit again, while
  live activations in several processes stay harmless (each script checks the
  subscription itself).
  KEYS[1] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  ARGV[1] action: acquire | renew | release   ARGV[2] epoch (renew, release; '' for acquire)
  ARGV[3] ttl ms
  Returns {"epoch": n, "expires_ms": ms, "now_ms": ms} (release: expires_ms 0)
  Errors: STALE_EPOCH, VALIDATION_ERROR
  Writes KEYS[1]; appends no event (bookkeeping, not domain state).
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_actor_fence"
--- @include "dg_actor_renew"
local now = dg_now_ms()
local action = ARGV[1]
if action == 'acquire' then
  -- forget lapsed leases of earlier activations (bounded: one per process at most)
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'e:' and tonumber(flat[i + 1]) <= now then
      redis.call('HDEL', KEYS[1], flat[i])
    end
  end
  local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  local expires = dg_actor_renew(KEYS[1], epoch, now, ARGV[3])
  return cjson.encode({epoch = epoch, expires_ms = expires, now_ms = now})
end
if action == 'renew' then
  local stale = dg_actor_fence(KEYS[1], ARGV[2], now)
  if stale then
    redis.call('HDEL', KEYS[1], 'e:' .. ARGV[2])
    return dg_error('STALE_EPOCH', stale)
  end
  local expires = dg_actor_renew(KEYS[1], ARGV[2], now, ARGV[3])
  return cjson.encode({epoch = tonumber(ARGV[2]), expires_ms = expires, now_ms = now})
end
if action == 'release' then
  redis.call('HDEL', KEYS[1], 'e:' .. ARGV[2])
  return cjson.encode({epoch = tonumber(ARGV[2]), expires_ms = 0, now_ms = now})
end
return dg_error('VALIDATION_ERROR', {field = 'action', value = action})
