-- Backpressure: the partition's unpersisted backlog has reached its bound.
-- Writers call this before their first write and answer PERSISTENCE_LAGGING.
local function dg_backlog_full(log_key, bound)
  local n = redis.call('XLEN', log_key)
  if n >= tonumber(bound) then
    return {backlog = n, bound = tonumber(bound)}
  end
  return nil
end
