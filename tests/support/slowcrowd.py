"""Slow sockets for the hostile-client tests (issue 21, item 1): idle, dripping headers,
dripping a declared body, each kept open until the server closes it.

``Crowd`` runs them on the caller's event loop. ``CrowdProcess`` runs a ``Crowd`` in a
process of its own, as a real attacker would be: opening and dripping 1,500 sockets keeps
a Python event loop busy for seconds on a loaded machine, and a probe sharing that loop
would time the crowd's loop, not the server. Run as ``python -m tests.support.slowcrowd
PORT ADMIN_KEY PER_KIND DRIP_S WAIT_S``: it prints ``connected`` once every socket has
been tried, then, when all are closed or ``WAIT_S`` has passed, one JSON line
(``closed_after`` per kind, ``pending`` per kind, ``refused``).

Kept free of the test suite's imports, so the process starts quickly.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Crowd", "CrowdProcess"]

KINDS = ("idle", "head", "body")


@dataclass
class Crowd:
    """Slow sockets of three kinds, dripping until the server closes them."""

    port: int
    admin_key: str
    closed_after: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    refused: int = 0
    tried: int = 0  # sockets whose connect has finished (opened or refused)

    async def one(self, kind: str, drip_s: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused += 1
            return
        finally:
            self.tried += 1
        opened = time.monotonic()
        try:
            if kind == "head":
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            elif kind == "body":
                writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + self.admin_key.encode() + b"\r\n"
                             b"Content-Length: 1000000\r\n\r\n{")
            while True:
                if kind != "idle":
                    writer.write(b"X-Drip: 1\r\n" if kind == "head" else b" ")
                    await writer.drain()
                try:  # the server closing the socket: EOF (or a reset), or an answer
                    data = await asyncio.wait_for(reader.read(65536), drip_s)
                except TimeoutError:
                    continue
                if not data:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        self.closed_after[kind].append(time.monotonic() - opened)

    def open(self, per_kind: int, *, drip_s: float) -> list[asyncio.Task[None]]:
        """``per_kind`` sockets of each kind, each a task that ends when the server closes it."""
        return [asyncio.create_task(self.one(kind, drip_s))
                for kind in KINDS for _ in range(per_kind)]


async def _run(port: int, admin_key: str, per_kind: int, drip_s: float, wait_s: float) -> dict[str, Any]:
    crowd = Crowd(port, admin_key)
    kinds = [kind for kind in KINDS for _ in range(per_kind)]
    tasks = crowd.open(per_kind, drip_s=drip_s)
    while crowd.tried < len(tasks):  # a counter: no event to wait on
        await asyncio.sleep(0.05)
    print("connected", flush=True)
    _done, pending = await asyncio.wait(tasks, timeout=wait_s)
    still = {k: 0 for k in KINDS}
    for task, kind in zip(tasks, kinds, strict=True):
        if task in pending:
            still[kind] += 1
            task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {"closed_after": crowd.closed_after, "pending": still, "refused": crowd.refused}


def main(argv: list[str]) -> None:
    port, admin_key, per_kind, drip_s, wait_s = argv
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * int(per_kind) + 256
    if soft < want:  # more sockets than the server may have: that is the point
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    result = asyncio.run(_run(int(port), admin_key, int(per_kind), float(drip_s), float(wait_s)))
    print(json.dumps(result), flush=True)


class CrowdProcess:
    """A ``Crowd`` in a subprocess (see the module's doc)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int, admin_key: str, *, per_kind: int, drip_s: float,
                    wait_s: float) -> CrowdProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.slowcrowd", str(port), admin_key, str(per_kind),
            str(drip_s), str(wait_s), stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    async def connected(self) -> None:
        """Once every socket of the crowd has been tried (opened, or refused)."""
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        assert line.strip() == b"connected", line

    async def result(self) -> dict[str, Any]:
        """The crowd's outcome, once every socket is closed or its wait is over."""
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        assert await self.proc.wait() == 0, line
        result: dict[str, Any] = json.loads(line)
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


if __name__ == "__main__":
    main(sys.argv[1:])
