--[[
  Initiate a withdrawal: recorded as pending; no money moves until a different
  person approves it (ledger_withdrawal_approve).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] withdrawal hash     <prefix>:{pN}:t:<tenant>:wd:<id>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] withdrawal id   ARGV[6] amount (minor units, > 0)   ARGV[7] currency
  ARGV[8] initiated by (a label)   ARGV[9] initiator (the key's identity: "name:<casefolded
  name>", or "key:<key id>" for a key without a name; '' from engine-level callers)
  ARGV[10] initiating key id ('' none)
  Returns the withdrawal as an object
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, ALREADY_EXISTS, PERSISTENCE_LAGGING
  Writes KEYS[4], KEYS[3] (lease renewal); appends withdrawal.initiated to KEYS[1].
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
  return dg_error('ALREADY_EXISTS', {withdrawal_id = ARGV[5]})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
local w = {tenant_id = ARGV[2], withdrawal_id = ARGV[5], amount = tonumber(ARGV[6]),
  currency = ARGV[7], initiated_by = ARGV[8], status = 'pending', created_ms = now, version = 1,
  initiator = ARGV[9], initiator_key_id = ARGV[10]}
redis.call('HSET', KEYS[4], 'tenant_id', w.tenant_id, 'withdrawal_id', w.withdrawal_id,
  'amount', w.amount, 'currency', w.currency, 'initiated_by', w.initiated_by,
  'status', w.status, 'created_ms', now, 'version', 1, 'initiator', ARGV[9],
  'initiator_key_id', ARGV[10])
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
dg_emit(KEYS[1], 'withdrawal.initiated', 'withdrawal:' .. ARGV[2] .. ':' .. ARGV[5], 1, w)
return cjson.encode(w)
