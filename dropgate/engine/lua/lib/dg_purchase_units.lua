-- Move a purchase's units to `to` ('held' | 'sold' | 'none') and keep the counters
-- exact: the offer's reserved counts the held units, its sold the sold ones, and the
-- offer's users hash (user id -> units held or owned, for max_per_user) both. Every
-- script that changes where a purchase's units are goes through here, so the counters
-- and the records can never disagree. A record written before `units` existed takes
-- it from its status. Returns nothing; the caller writes the record.
local function dg_purchase_units(offer_key, users_key, p, to)
  local from = p.units
  if from == nil then
    if p.status == 'pending' then from = 'held' elseif p.status == 'paid' then from = 'sold' else from = 'none' end
  end
  if from ~= to then
    if from == 'held' then redis.call('HINCRBY', offer_key, 'reserved', -p.quantity) end
    if from == 'sold' then redis.call('HINCRBY', offer_key, 'sold', -p.quantity) end
    if to == 'held' then redis.call('HINCRBY', offer_key, 'reserved', p.quantity) end
    if to == 'sold' then redis.call('HINCRBY', offer_key, 'sold', p.quantity) end
    if (from == 'none') ~= (to == 'none') then
      local n = redis.call('HINCRBY', users_key, p.user_id, to == 'none' and -p.quantity or p.quantity)
      if n <= 0 then redis.call('HDEL', users_key, p.user_id) end
    end
  end
  p.units = to
end
