"""The parts of a wrk Lua script that the benchmarks share, and reading its result.

wrk runs a script per thread; ``setup`` registers each thread so that ``done`` (run
once, after the threads stopped) can add up what each counted in ``response``. A
script built from these parts keeps a ``statuses`` table per thread (and, with
``empties``, an ``empty`` counter) and prints one line, ``WRK_RESULT {json}``: requests,
duration, p50 and p99 in µs, socket errors, and answers by status. ``result`` reads
that line back.
"""

from __future__ import annotations

import json
from typing import Any

SETUP = """local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
"""


def done(*, empties: bool = False) -> str:
    """wrk's ``done``: the threads' counts added up, printed as one ``WRK_RESULT`` line
    (with ``empties``, also the sum of the threads' ``empty`` counters)."""
    add = '    empties = empties + t:get("empty")\n' if empties else ""
    field = '"empty":%d,' if empties else ""
    value = "empties, " if empties else ""
    return f"""function done(summary, latency, requests)
  local counts, empties, parts = {{}}, 0, {{}}
  for _, t in ipairs(threads) do
    for status, c in pairs(t:get("statuses")) do counts[status] = (counts[status] or 0) + c end
{add}  end
  for status, c in pairs(counts) do table.insert(parts, string.format('"%d":%d', status, c)) end
  local e = summary.errors
  io.write(string.format('WRK_RESULT {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,{field}"statuses":{{%s}}}}\\n', summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write,
    e.timeout, {value}table.concat(parts, ",")))
end
"""


def result(out: str) -> dict[str, Any]:
    """The ``WRK_RESULT`` a run printed (its whole output in the error when there is none)."""
    line = next((x for x in out.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"no result from wrk:\n{out}")
    parsed: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return parsed
