--[[
  Change an order's status (gated like its creation). A canceled or delivered order is
  final: changing it again is a conflict; setting the status it has changes nothing.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] order hash          <prefix>:{pN}:t:<tenant>:order:<id>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] order id   ARGV[6] new status
  Returns the order as an object (items as the JSON string)
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[4], KEYS[3] (lease renewal); appends order.updated to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_tenant_gate"
--- @include "dg_actor_renew"
local now = dg_now_ms()
local refused = dg_tenant_gate(KEYS[2], KEYS[3], ARGV[3], now)
if refused then return refused end
local o = dg_hash_object(KEYS[4])
if o == nil then return dg_error('NOT_FOUND', {order_id = ARGV[5]}) end
local function whole(order)
  order.total = tonumber(order.total)
  order.created_ms = tonumber(order.created_ms)
  order.updated_ms = tonumber(order.updated_ms)
  order.version = tonumber(order.version)
  return order
end
if o.status == ARGV[6] then return cjson.encode(whole(o)) end
if o.status == 'canceled' or o.status == 'delivered' then
  return dg_error('CONFLICT', {order_id = ARGV[5], status = o.status})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[4], 'status', ARGV[6], 'updated_ms', now)
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
o.status = ARGV[6]
o.updated_ms = now
o.version = version
o = whole(o)
dg_emit(KEYS[1], 'order.updated', 'order:' .. ARGV[2] .. ':' .. ARGV[5], version, o)
return cjson.encode(o)
