--[[
  Read an offer with exact availability: expired holds are released first (when the
  backlog allows writing), so a reader never sees units held by a dead checkout.
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] offer hash          <prefix>:{pN}:t:<tenant>:offer:<offer>
  KEYS[3] offer holds zset    <prefix>:{pN}:t:<tenant>:offer:<offer>:holds
  KEYS[4] hold expiry zset    <prefix>:{pN}:offer_holds
  KEYS[5] purchases hash      <prefix>:{pN}:t:<tenant>:purchases
  KEYS[6] offer users hash    <prefix>:{pN}:t:<tenant>:offer:<offer>:users
  KEYS[7] purchase sessions   <prefix>:{pN}:t:<tenant>:purchase_sessions (lib/dg_purchase_session.lua)
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] offer id
  Returns the offer hash as an object (string values).
  Errors: NOT_FOUND
  Writes only by releasing expired holds (KEYS[2..7]); appends offer.purchase per release.
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
--- @include "dg_purchase_units"
--- @include "dg_offer_release"
--- @include "dg_offer_expire_holds"
if redis.call('EXISTS', KEYS[2]) == 0 then return dg_error('NOT_FOUND', {offer_id = ARGV[3]}) end
if not dg_backlog_full(KEYS[1], ARGV[1]) then
  dg_offer_expire_holds(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], dg_now_ms(), 1000,
    ARGV[1])
end
return cjson.encode(dg_hash_object(KEYS[2]))
