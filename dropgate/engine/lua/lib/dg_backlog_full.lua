-- Backpressure: the partition's unpersisted backlog has no room left under its bound for
-- the `need` events (default 1) the caller may append. Writers call this before their
-- first write and answer PERSISTENCE_LAGGING. A script appending two events checks for
-- two: checked for one, a log at bound - 1 went to bound + 1 (the fault lab saw 1501/1500).
local function dg_backlog_full(log_key, bound, need)
  local n = redis.call('XLEN', log_key)
  if n + (need or 1) > tonumber(bound) then
    return {backlog = n, bound = tonumber(bound)}
  end
  return nil
end
