-- The actor fence: nil when activation `epoch` still holds a live lease on the
-- tenant's actor lease hash (Redis time decides), else the STALE_EPOCH details.
-- A lease that lapsed (its process paused or partitioned past the TTL) never
-- comes back: its epoch is never handed out again (the counter never resets).
local function dg_actor_fence(lease_key, epoch, now_ms)
  local expires = tonumber(redis.call('HGET', lease_key, 'e:' .. epoch))
  if expires == nil or expires <= now_ms then
    return {epoch = tonumber(epoch), lease_expired_ms = expires or cjson.null}
  end
  return nil
end
