--[[
  A payment into the tenant's balance in one currency, fenced by the actor's lease
  and the tenant's subscription in the same atomic step.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] payment id   ARGV[6] amount (minor units, > 0)   ARGV[7] currency   ARGV[8] reference
  Returns {"payment_id", "balance", "at_ms"}
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[2] (bal:<currency>), KEYS[3] (lease renewal); appends payment.created to KEYS[1].
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
local field = 'bal:' .. ARGV[7]
local amount = tonumber(ARGV[6])
local balance = tonumber(redis.call('HGET', KEYS[2], field) or '0')
-- cjson writes 14 significant digits: a balance stays below 10^14 minor units to stay exact
if balance + amount > 99999999999999 then
  return dg_error('CONFLICT', {reason = 'balance_limit', currency = ARGV[7], limit = 99999999999999})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
balance = redis.call('HINCRBY', KEYS[2], field, amount)
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
dg_emit(KEYS[1], 'payment.created', 'payment:' .. ARGV[2] .. ':' .. ARGV[5], 1, {
  tenant_id = ARGV[2], payment_id = ARGV[5], amount = amount, currency = ARGV[7],
  reference = ARGV[8], balance = balance, epoch = tonumber(ARGV[3]), at_ms = now})
return cjson.encode({payment_id = ARGV[5], balance = balance, at_ms = now})
