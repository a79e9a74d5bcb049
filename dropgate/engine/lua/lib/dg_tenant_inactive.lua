-- The subscription fence: nil when the tenant may run a critical operation now,
-- else the SUBSCRIPTION_INACTIVE details. `active`, or `trialing` with trial_end in
-- the future (Redis time decides), is active; a missing tenant is inactive.
local function dg_tenant_inactive(tenant_key, now_ms)
  local t = redis.call('HMGET', tenant_key, 'status', 'trial_end_ms')
  local status, trial_end = t[1], tonumber(t[2])
  if status == 'active' then return nil end
  if status == 'trialing' and trial_end ~= nil and trial_end > now_ms then return nil end
  return {subscription_status = status or 'unknown', trial_end_ms = trial_end or cjson.null}
end
