-- Lazy expiry: release up to `limit` of the offer's holds whose expiry has passed
-- (needs dg_offer_release and dg_emit). Every script that reads an offer's
-- availability calls this first, so a crowd never waits for the sweeper.
-- Each release appends one event, so at most the room left under the backlog `bound`
-- are released (the log never grows past its bound, not even by expiries; the rest wait
-- for the persister). Returns the number of holds released.
local function dg_offer_expire_holds(log_key, offer_key, holds_key, expiry_key, purchases_key,
                                     users_key, sessions_key, now, limit, bound)
  limit = math.min(limit, tonumber(bound) - redis.call('XLEN', log_key))
  if limit <= 0 then return 0 end
  local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, limit)
  local released = 0
  for _, pid in ipairs(due) do
    local raw = redis.call('HGET', purchases_key, pid)
    local p = raw and cjson.decode(raw)
    if p and p.status == 'pending' then
      dg_offer_release(log_key, offer_key, holds_key, expiry_key, purchases_key, users_key,
        sessions_key, p, 'expired', now)
      released = released + 1
    else
      redis.call('ZREM', holds_key, pid)
    end
  end
  return released
end
