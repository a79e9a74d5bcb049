-- Exact percentage of an amount, rounded half up, with no fractional number anywhere:
-- `base * units / 1,000,000` where `units` are hundredths of a basis point
-- (models/money.parse_percent: "12.5" -> 125000) and 0 <= base <= 10^13 minor units.
-- base * units alone can reach 10^19, past 2^53 where doubles stop being exact, so
-- the multiplication is split: base = q * 10^6 + r gives
--   base * units / 10^6 = q * units + r * units / 10^6
-- with q * units <= 10^13 and r * units < 10^12. math.fmod is exact on doubles, so
-- (a - fmod(a, b)) / b is an exact integer division.
local function dg_percent_of(base, units)
  local r = math.fmod(base, 1000000)
  local q = (base - r) / 1000000
  local low = r * units + 500000
  return q * units + (low - math.fmod(low, 1000000)) / 1000000
end
