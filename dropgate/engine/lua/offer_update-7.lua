--[[
  Patch an offer: inventory total (never below reserved + sold), active, archived,
  expiry, per-user cap, redirect URLs. A lowered cap holds new purchases only. Expired holds are released first, so they do not block a lowered total.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds
  KEYS[5] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[6] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[7] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions (lib/dg_purchase_session.lua)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id
  ARGV[4] inventory total ('' unchanged)   ARGV[5] active ('' | '1' | '0')
  ARGV[6] archived ('' | '1' | '0')   ARGV[7] expires_at ms ('' unchanged, 'none' clears)
  ARGV[8] max_per_user, ARGV[9] success_url, ARGV[10] cancel_url ('' unchanged, 'none' clears)
  Returns the offer hash as an object (string values).
  Errors: NOT_FOUND, INVENTORY_CONFLICT, PERSISTENCE_LAGGING
  Writes KEYS[2] (and releases expired holds: KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]);
  appends offer.purchase per released hold and offer.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_offer_expire_holds"
--- @include "dg_spec_payload"
--- @spec "offer"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
if redis.call('EXISTS', KEYS[2]) == 0 then return dg_error('NOT_FOUND', {offer_id = ARGV[3]}) end
local now = dg_now_ms()
dg_offer_expire_holds(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], now, 1000,
  tonumber(ARGV[1]) - 1)  -- room kept for the offer.saved event below
local cur = redis.call('HMGET', KEYS[2], 'reserved', 'sold')
local reserved, sold = tonumber(cur[1]), tonumber(cur[2])
if ARGV[4] ~= '' and tonumber(ARGV[4]) < reserved + sold then
  return dg_error('INVENTORY_CONFLICT', {inventory_total = tonumber(ARGV[4]), reserved = reserved,
    sold = sold})
end
-- validated: now write
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'total', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'active', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'archived', ARGV[6]) end
if ARGV[7] == 'none' then
  redis.call('HDEL', KEYS[2], 'expires_at_ms')
elseif ARGV[7] ~= '' then
  redis.call('HSET', KEYS[2], 'expires_at_ms', ARGV[7])
end
for i, field in ipairs({'max_per_user', 'success_url', 'cancel_url'}) do
  local v = ARGV[7 + i]
  if v == 'none' then redis.call('HDEL', KEYS[2], field) elseif v ~= '' then redis.call('HSET', KEYS[2], field, v) end
end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
local o = dg_hash_object(KEYS[2])
dg_emit(KEYS[1], 'offer.saved', 'offer:' .. ARGV[2] .. ':' .. ARGV[3], version, dg_spec_payload(DG_SPEC, o, {tenant_id = ARGV[2], offer_id = ARGV[3]}))
return cjson.encode(o)
