--[[
  Approve a pending withdrawal: a person other than its initiator (four eyes: the
  approving key's identity differs from the initiating key's; the labels in bodies
  decide nothing, except on a withdrawal made before identities were recorded), and
  only if the balance covers it (never overdrawn); then debit and complete it.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] tenant hash         <prefix>:{pN}:tenant:<tenant>
  KEYS[3] actor lease hash    <prefix>:{pN}:t:<tenant>:actor
  KEYS[4] withdrawal hash     <prefix>:{pN}:t:<tenant>:wd:<id>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] epoch   ARGV[4] lease ttl ms
  ARGV[5] withdrawal id   ARGV[6] approved by (a label)   ARGV[7] approver (identity, as
  ledger_withdrawal_initiate's ARGV[9])   ARGV[8] approving key id ('' none)
  Returns the withdrawal as an object, with "balance" (after the debit)
  Errors: STALE_EPOCH, SUBSCRIPTION_INACTIVE, NOT_FOUND, CONFLICT, FOUR_EYES_REQUIRED, INSUFFICIENT_FUNDS, PERSISTENCE_LAGGING
  Writes KEYS[2] (bal:<currency>), KEYS[4], KEYS[3] (lease renewal);
  appends withdrawal.completed to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_tenant_gate"
--- @include "dg_withdrawal_decidable"
--- @include "dg_actor_renew"
local now = dg_now_ms()
local refused = dg_tenant_gate(KEYS[2], KEYS[3], ARGV[3], now)
if refused then return refused end
local w, undecidable = dg_withdrawal_decidable(KEYS[4], ARGV[5], ARGV[6], ARGV[7])
if undecidable then return undecidable end
local field = 'bal:' .. w.currency
local amount = tonumber(w.amount)
local balance = tonumber(redis.call('HGET', KEYS[2], field) or '0')
if balance < amount then
  return dg_error('INSUFFICIENT_FUNDS', {withdrawal_id = ARGV[5], currency = w.currency,
    balance = balance, amount = amount})
end
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
-- validated: now write
balance = redis.call('HINCRBY', KEYS[2], field, -amount)
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[4], 'status', 'completed', 'approved_by', ARGV[6], 'completed_ms', now,
  'approver', ARGV[7], 'approver_key_id', ARGV[8])
dg_actor_renew(KEYS[3], ARGV[3], now, ARGV[4])
local out = {tenant_id = ARGV[2], withdrawal_id = ARGV[5], amount = amount, currency = w.currency,
  initiated_by = w.initiated_by, approved_by = ARGV[6], status = 'completed',
  created_ms = tonumber(w.created_ms), completed_ms = now, version = version, balance = balance,
  epoch = tonumber(ARGV[3]), initiator = w.initiator or '', initiator_key_id = w.initiator_key_id or '',
  approver = ARGV[7], approver_key_id = ARGV[8]}
dg_emit(KEYS[1], 'withdrawal.completed', 'withdrawal:' .. ARGV[2] .. ':' .. ARGV[5], version, out)
return cjson.encode(out)
