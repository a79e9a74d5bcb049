"""The CPU that the processes beside a benchmarked server use: Redis, PostgreSQL, the persister.

Why (issue #19, BENCHMARKS.md "A fast host, and what a throughput ratio is made of"): on this
2-core machine the API process shares its cores with the stores, and it waits for a core while
they run. A window's throughput is the server's share of the cores over its CPU per request, so
how much CPU each neighbour took per request says where the rest of the machine went. Read
around each wrk window:

- Redis: its own account (``INFO cpu``: ``used_cpu_user + used_cpu_sys``, every thread), so it
  works for the machine's Redis, the embedded one and a remote one alike;
- PostgreSQL: every process of this machine named ``postgres`` (``/proc/<pid>/comm``; backends,
  WAL writer, checkpointer), per process id, so a backend that starts during the window counts
  from zero; one that ends during it is not counted (an undercount, never an overcount). ``None``
  when no such process runs here (a remote server);
- the persister: its process (``/proc/<pid>/stat``);
- the machine's cores (``/proc/stat``'s first line): the shares of the window no process was
  charged for, idle and stolen by a hypervisor, and the share in interrupts (mostly the
  kernel's network work for the loopback sockets). A kernel that accounts CPU by ticks without
  ``CONFIG_IRQ_TIME_ACCOUNTING`` (this machine's) charges an interrupt's tick to the process it
  interrupted too, so that share is inside the processes' figures, not beside them. A
  window's CPU per request times its rate, over the cores, plus idle and stolen comes to
  about 1; what does not is the CPU of the other processes here (the benchmark's own among
  them).

On a shared machine Redis and PostgreSQL serve others too: their figures hold everything they
did during the window.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from benchmarks.revisions import cpu_s


def postgres_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each process of this machine named ``postgres``."""
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if (entry / "comm").read_text().strip() == "postgres":
                out[int(entry.name)] = cpu_s(int(entry.name))
    return out


async def redis_cpu_s(redis: Redis) -> float:
    """Redis's CPU seconds so far by its own account (``INFO cpu``: user + system, every thread)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# /proc/stat's "cpu" line, in its order (proc(5)); guest time is inside user already
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> dict[str, int]:
    """The machine's time so far (every core, clock ticks) by what it was spent on."""
    with open("/proc/stat") as f:
        values = f.readline().split()[1:1 + len(_CPU_FIELDS)]
    return dict(zip(_CPU_FIELDS, map(int, values), strict=True))


def unattributed(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Of the time between two ``machine_ticks``, the shares ``idle`` (with waiting for I/O)
    and ``stolen``, which no process was charged for, and ``interrupts`` (hard and soft)."""
    spent = {k: after[k] - before[k] for k in _CPU_FIELDS}
    total = sum(spent.values()) or 1
    return {"idle": (spent["idle"] + spent["iowait"]) / total,
            "interrupts": (spent["irq"] + spent["softirq"]) / total, "stolen": spent["steal"] / total}


@dataclass
class Reading:
    redis_s: float
    postgres: dict[int, float]
    persister_s: float
    machine: dict[str, int]


@dataclass
class Spent:
    """CPU seconds each neighbour spent between two readings (``postgres_s`` None: none here)."""

    redis_s: float
    postgres_s: float | None
    persister_s: float
    machine: dict[str, float]  # ``unattributed``


class StoreCpu:
    """Readings of the neighbours' CPU, for the windows of one benchmark."""

    def __init__(self, redis: Redis, persister_pid: int) -> None:
        self.redis = redis
        self.persister_pid = persister_pid

    async def read(self) -> Reading:
        return Reading(redis_s=await redis_cpu_s(self.redis), postgres=postgres_cpu(),
                       persister_s=cpu_s(self.persister_pid), machine=machine_ticks())

    @staticmethod
    def spent(before: Reading, after: Reading) -> Spent:
        postgres = (sum(s - before.postgres.get(pid, 0.0) for pid, s in after.postgres.items())
                    if after.postgres else None)
        return Spent(redis_s=after.redis_s - before.redis_s, postgres_s=postgres,
                     persister_s=after.persister_s - before.persister_s,
                     machine=unattributed(before.machine, after.machine))
