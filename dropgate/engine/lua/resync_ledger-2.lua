--[[
  Re-emit a withdrawal or an order from Redis into the log (reconcile --repair), for
  PostgreSQL to catch up (a row deleted by hand, a lost or dead-lettered event): the
  withdrawal's withdrawal.initiated, .completed or .rejected (by its status) or the order's
  order.created, carrying the whole record at its version. Changes no state; the
  appliers are idempotent (upsert by version, insert on conflict do nothing).
  KEYS[1] partition log       <prefix>:{pN}:log
  KEYS[2] record hash         <prefix>:{pN}:t:<tenant>:wd:<id> or ...:order:<id>
  ARGV[1] backlog bound   ARGV[2] 'withdrawal' | 'order'   ARGV[3] tenant id   ARGV[4] id
  Returns {"version": n}
  Errors: NOT_FOUND, PERSISTENCE_LAGGING
  Writes nothing; appends withdrawal.initiated, .completed, .rejected or order.created to KEYS[1].
]]
--- @include "dg_error"
--- @include "dg_emit"
--- @include "dg_backlog_full"
--- @include "dg_hash_object"
local full = dg_backlog_full(KEYS[1], ARGV[1])
if full then return dg_error('PERSISTENCE_LAGGING', full) end
local r = dg_hash_object(KEYS[2])
if r == nil then return dg_error('NOT_FOUND', {id = ARGV[4]}) end
local version = tonumber(r.version)
r.version = version
r.created_ms = tonumber(r.created_ms)
if ARGV[2] == 'withdrawal' then
  r.amount = tonumber(r.amount)
  r.completed_ms = tonumber(r.completed_ms)
  r.rejected_ms = tonumber(r.rejected_ms)
  local etype = 'withdrawal.initiated'
  if r.status == 'completed' then etype = 'withdrawal.completed' end
  if r.status == 'rejected' then etype = 'withdrawal.rejected' end
  dg_emit(KEYS[1], etype, 'withdrawal:' .. ARGV[3] .. ':' .. ARGV[4], version, r)
else
  r.total = tonumber(r.total)
  r.updated_ms = tonumber(r.updated_ms)
  dg_emit(KEYS[1], 'order.created', 'order:' .. ARGV[3] .. ':' .. ARGV[4], version, r)
end
return cjson.encode({version = version})
