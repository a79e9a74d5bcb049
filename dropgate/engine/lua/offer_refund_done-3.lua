--[[
  The provider accepted the refund of a purchase marked refunded (refund pending).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[3] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] purchase id   ARGV[4] refund id
  Returns {"status": s, "refund": "done"}
  Errors: NOT_FOUND, CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[2], KEYS[3] (version); appends offer.purchase to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_purchase_save"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local raw = redis.call('HGET', KEYS[2], ARGV[3])
if not raw then return dg_error('NOT_FOUND', {purchase_id = ARGV[3]}) end
local p = cjson.decode(raw)
if p.status ~= 'refunded' then
  return dg_error('CONFLICT', {purchase_id = ARGV[3], status = p.status})
end
if p.refund ~= 'done' then
  p.refund = 'done'
  p.refund_id = ARGV[4]
  -- the whole payment went back: one refund, counted once by its id
  if type(p.refunds) ~= 'table' then p.refunds = {} end
  p.refunds[ARGV[4]] = p.amount_minor
  p.refunded_minor = p.amount_minor
  dg_purchase_save(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], p, dg_now_ms())
end
return cjson.encode({status = p.status, refund = p.refund})
