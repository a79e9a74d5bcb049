--[[
  Set where a tenant's checkouts return the buyer when the offer names no URL
  (PUT /v1/tenants/{id}/checkout). An empty value removes the URL (dropgate's own
  pages then). The settings carry their own version (`checkout_version`), apart from
  the tenant's, so they never race a subscription change.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] success url ('' none)
  ARGV[4] cancel url ('' none)
  Returns {"tenant_id": s, "success_url": s|null, "cancel_url": s|null, "checkout_version": n}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes KEYS[2]; appends tenant.checkout to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return dg_error('NOT_FOUND', {tenant_id = ARGV[2]})
end
local payload = {tenant_id = ARGV[2]}
for i, field in ipairs({'success_url', 'cancel_url'}) do
  local v = ARGV[2 + i]
  if v == '' then
    redis.call('HDEL', KEYS[2], field)
    payload[field] = cjson.null
  else
    redis.call('HSET', KEYS[2], field, v)
    payload[field] = v
  end
end
local version = redis.call('HINCRBY', KEYS[2], 'checkout_version', 1)
dg_emit(KEYS[1], 'tenant.checkout', 'tenant_checkout:' .. ARGV[2], version, payload)
payload.checkout_version = version
return cjson.encode(payload)
