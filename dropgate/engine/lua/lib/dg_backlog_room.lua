-- Backpressure for a script appending one event per request it takes (dg_backlog_full
-- checks one write): the partition's room under its bound is read once, at the first ask,
-- and counted down. take() -> nil (room for one more event, now taken) or the
-- PERSISTENCE_LAGGING details {backlog, bound} (the caller refuses that request).
local function dg_backlog_room(log_key, bound_arg)
  local bound = tonumber(bound_arg)
  local room = nil
  return function()
    if room == nil then room = bound - redis.call('XLEN', log_key) end
    if room < 1 then return {backlog = bound - room, bound = bound} end
    room = room - 1
    return nil
  end
end
