--[[
  Record an order (its id unique in the tenant).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] order hash          <prefix>:{pN}:t:<tenant>:order:<id>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] order id   ARGV[6] items (JSON array of {sku, quantity})   ARGV[7] total (minor units)
  ARGV[8] currency
  Returns the order as an object (items as the JSON string)
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[4], KEYS[3] (lease renewal); appends order.created to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_tenant_gate"
--- @include "dg_actor_renew"
local now = dg_now_ms()
local refused = dg_tenant_gate(KEYS[2], KEYS[3], ARGV[3], now)
if refused then return refused end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return dg_error('ALREADY_EXISTS', {order_id = ARGV[5]})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local o = {tenant_id = ARGV[2], order_id = ARGV[5], items = ARGV[6], total = tonumber(ARGV[7]),
  currency = ARGV[8], status = 'created', created_ms = now, version = 1}
redis.call('HSET', KEYS[4], 'tenant_id', o.tenant_id, 'order_id', o.order_id, 'items', o.items,
  'total', o.total, 'currency', o.currency, 'status', o.status, 'created_ms', now, 'version', 1)
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
dg_emit(KEYS[1], 'order.created', 'order:' .. ARGV[2] .. ':' .. ARGV[5], 1, o)
return cjson.encode(o)
