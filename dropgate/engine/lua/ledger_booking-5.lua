--[[
  Book one place in a resource's slot; the slot's capacity is never exceeded. The
  first booking of a slot sets its capacity (default 1); a later one may repeat it
  or leave it out, a different value is a conflict.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] slot hash           <prefix>:{pN}:t:<tenant>:slot:<resource>:<start ms>:<end ms>
  KEYS[5] booking hash        <prefix>:{pN}:t:<tenant>:booking:<id> (its record: cancel reads it)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] booking id   ARGV[6] resource id   ARGV[7] slot start ms   ARGV[8] slot end ms
  ARGV[9] capacity ('' unset)   ARGV[10] user id
  Returns {"booking_id", "capacity", "booked", "created_ms"}
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, ALREADY_EXISTS, CONFLICT, SLOT_FULL, PERSISTENCE_LAGGING
  Writes KEYS[4], KEYS[5], KEYS[3] (lease renewal); appends booking.created to KEYS[1].
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
if redis.call('EXISTS', KEYS[5]) == 1 then
  return dg_error('ALREADY_EXISTS', {booking_id = ARGV[5]})
end
local slot = redis.call('HMGET', KEYS[4], 'capacity', 'booked')
local asked = tonumber(ARGV[9])
local capacity = tonumber(slot[1])
local booked = tonumber(slot[2]) or 0
if capacity == nil then
  capacity = asked or 1
elseif asked ~= nil and asked ~= capacity then
  return dg_error('CONFLICT', {resource_id = ARGV[6], capacity = capacity, requested_capacity = asked})
end
if booked >= capacity then
  return dg_error('SLOT_FULL', {resource_id = ARGV[6], capacity = capacity, booked = booked})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
if slot[1] == false then
  redis.call('HSET', KEYS[4], 'resource_id', ARGV[6], 'slot_start_ms', ARGV[7],
    'slot_end_ms', ARGV[8], 'capacity', capacity, 'booked', 0, 'version', 0)
end
booked = redis.call('HINCRBY', KEYS[4], 'booked', 1)
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[5], 'tenant_id', ARGV[2], 'booking_id', ARGV[5], 'resource_id', ARGV[6],
  'slot_start_ms', ARGV[7], 'slot_end_ms', ARGV[8], 'user_id', ARGV[10], 'status', 'booked',
  'created_ms', now, 'version', 1)
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
dg_emit(KEYS[1], 'booking.created', 'slot:' .. ARGV[2] .. ':' .. ARGV[6] .. ':' .. ARGV[7] .. ':' .. ARGV[8],
  version, {tenant_id = ARGV[2], booking_id = ARGV[5], resource_id = ARGV[6],
  slot_start_ms = tonumber(ARGV[7]), slot_end_ms = tonumber(ARGV[8]), capacity = capacity,
  user_id = ARGV[10], booked = booked, epoch = tonumber(ARGV[3]), at_ms = now})
return cjson.encode({booking_id = ARGV[5], capacity = capacity, booked = booked, created_ms = now})
