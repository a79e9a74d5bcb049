--[[
  Cancel a booking: its place in the slot is free again. Gated like the booking (the
  actor's lease, the tenant's subscription).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] booking hash        <prefix>:{pN}:t:<tenant>:booking:<id>
  KEYS[5] slot hash           <prefix>:{pN}:t:<tenant>:slot:<resource>:<start ms>:<end ms>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] booking id
  Returns the booking as an object, with "capacity" and "booked" (the slot's, after)
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[4], KEYS[5], KEYS[3] (lease renewal); appends booking.canceled to KEYS[1].
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
local b = dg_hash_object(KEYS[4])
if b == nil then return dg_error('NOT_FOUND', {booking_id = ARGV[5]}) end
if b.status ~= 'booked' then
  return dg_error('CONFLICT', {booking_id = ARGV[5], status = b.status})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[4], 'status', 'canceled', 'canceled_ms', now)
local booked = redis.call('HINCRBY', KEYS[5], 'booked', -1)
local slot_version = redis.call('HINCRBY', KEYS[5], 'version', 1)
local capacity = tonumber(redis.call('HGET', KEYS[5], 'capacity'))
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
local out = {tenant_id = ARGV[2], booking_id = ARGV[5], resource_id = b.resource_id,
  slot_start_ms = tonumber(b.slot_start_ms), slot_end_ms = tonumber(b.slot_end_ms),
  user_id = b.user_id, status = 'canceled', created_ms = tonumber(b.created_ms),
  canceled_ms = now, version = version, capacity = capacity, booked = booked,
  epoch = tonumber(ARGV[3])}
dg_emit(KEYS[1], 'booking.canceled', 'slot:' .. ARGV[2] .. ':' .. b.resource_id .. ':' .. b.slot_start_ms
  .. ':' .. b.slot_end_ms, slot_version, out)
return cjson.encode(out)
