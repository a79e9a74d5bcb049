-- Redis server time in ms: every process and script agrees on "now".
local function dg_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
