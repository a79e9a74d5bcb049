-- Why an offer cannot sell now: nil when it is active, unarchived and unexpired,
-- else the OFFER_UNAVAILABLE details. `o` = HMGET of active, archived, expires_at_ms.
local function dg_offer_closed(offer_id, o, now)
  if o[1] ~= '1' then return {offer_id = offer_id, reason = 'inactive'} end
  if o[2] == '1' then return {offer_id = offer_id, reason = 'archived'} end
  local expires = tonumber(o[3])
  if expires ~= nil and now >= expires then return {offer_id = offer_id, reason = 'expired'} end
  return nil
end
