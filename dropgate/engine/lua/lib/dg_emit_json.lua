-- dg_emit with the payload already encoded (a script that also stores the same JSON
-- encodes it once): t = type, e = entity, v = entity version, d = JSON text.
local function dg_emit_json(log_key, etype, entity, version, json)
  return redis.call('XADD', log_key, '*', 't', etype, 'e', entity, 'v', tostring(version), 'd', json)
end
