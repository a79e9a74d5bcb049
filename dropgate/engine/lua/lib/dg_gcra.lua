-- GCRA (a token bucket without a refill loop): given the stored theoretical arrival
-- time `tat` (nil when none), decide one request at `now`. Returns true, new_tat
-- when allowed, else false, retry_after_ms. Shared by ratelimit_take and the
-- batched offer purchase, so both limit exactly alike.
local function dg_gcra(tat, now, interval, burst)
  if tat == nil or tat < now then tat = now end
  local allow_at = tat - interval * burst
  if now < allow_at then
    return false, math.ceil(allow_at - now + interval)
  end
  return true, tat + interval
end
