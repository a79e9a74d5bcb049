-- Append one change to the partition's event log, in the same atomic step as the
-- change: t = type, e = entity, v = entity version, d = JSON payload.
-- Returns the stream id, which orders the partition's events.
local function dg_emit(log_key, etype, entity, version, payload)
  return redis.call('XADD', log_key, '*', 't', etype, 'e', entity, 'v', tostring(version),
    'd', cjson.encode(payload))
end
