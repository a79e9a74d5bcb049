--[[
  Create a campaign, or change one (PATCH). Its definition is a hash of its own,
  beside the pool's meta hash (which reconcile compares with the code rows): `name`,
  `ttl_s` (its reservations' default lifetime), `low_wm` (codes.pool_low below it),
  `created_ms`, and a field `t:<type>` per code type; types are only ever added (a
  code keeps its type for good). An upload to an unknown campaign creates the pool's
  meta hash only, so "exists" means either hash exists (Codes.require_campaign).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] campaign definition <prefix>:{pN}:t:<tenant>:campaign:<campaign>
  ARGV[1] backlog bound   ARGV[2] tenant id   ARGV[3] campaign id
  ARGV[4] 'create' or 'update'   ARGV[5] name ('\0' keep)
  ARGV[6] types to add, newline-joined ('' none)
  ARGV[7] ttl_s ('' keep, '-' clear)   ARGV[8] low watermark ('' keep, '-' clear)
  Returns {"name", "types", "ttl_s", "low_watermark", "created_ms"}
  Errors: ALREADY_EXISTS, NOT_FOUND, PERSISTENCE_LAGGING
    (ALREADY_EXISTS only on create, NOT_FOUND only on update)
  Writes KEYS[2]; appends campaign.saved to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_now_ms"
--- @include "dg_emit"
--- @include "dg_backlog_full"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local exists = redis.call('EXISTS', KEYS[2]) == 1
if ARGV[4] == 'create' and exists then
  return dg_error('ALREADY_EXISTS', {campaign_id = ARGV[3]})
end
if ARGV[4] == 'update' and not exists then
  return dg_error('NOT_FOUND', {campaign_id = ARGV[3]})
end
-- validated: now write
local now = dg_now_ms()
redis.call('HSETNX', KEYS[2], 'created_ms', now)
if ARGV[5] ~= '\0' then redis.call('HSET', KEYS[2], 'name', ARGV[5]) end
for t in string.gmatch(ARGV[6], '[^\n]+') do redis.call('HSET', KEYS[2], 't:' .. t, 1) end
local function set(field, value)
  if value == '-' then redis.call('HDEL', KEYS[2], field)
  elseif value ~= '' then redis.call('HSET', KEYS[2], field, value) end
end
set('ttl_s', ARGV[7])
set('low_wm', ARGV[8])
-- the definition's own counter: `version` counts the pool's code changes, which
-- reconcile compares with the newest code row in PostgreSQL
local version = redis.call('HINCRBY', KEYS[2], 'defversion', 1)
local types = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(f, 1, 2) == 't:' then types[#types + 1] = string.sub(f, 3) end
end
table.sort(types)
local h = {
  name = redis.call('HGET', KEYS[2], 'name') or '',
  types = types,
  ttl_s = tonumber(redis.call('HGET', KEYS[2], 'ttl_s')) or cjson.null,
  low_watermark = tonumber(redis.call('HGET', KEYS[2], 'low_wm')) or cjson.null,
  created_ms = tonumber(redis.call('HGET', KEYS[2], 'created_ms')),
}
dg_emit(KEYS[1], 'campaign.saved', 'codes:' .. ARGV[2] .. ':' .. ARGV[3], version, {
  tenant_id = ARGV[2], campaign_id = ARGV[3], name = h.name, types = h.types,
  reservation_ttl_s = h.ttl_s, low_watermark = h.low_watermark, created_ms = h.created_ms})
return cjson.encode(h)
