"""The API processes of ``dropgate serve``: ``http.app.serving`` runs one, ``extra_workers`` N-1 more
on the same port (``--workers N``).

One Python process tops out at one core (BENCHMARKS.md: the HTTP layer, not Redis, is
the limit). The kernel spreads connections over every process's listening socket
(``SO_REUSEPORT``), and each worker has its own runtime: pools, purchase batches,
tenant actors. That is safe by construction, because the scripts fence across
processes (docs/design.md: several API processes may run), so a worker is simply one more
API process.

The first process does what a single ``serve`` does (starts or attaches the embedded
servers, migrates, runs the persister); it then starts the others on the Redis and
PostgreSQL it resolved, without a persister. A worker that exits stops the whole
server: running on with fewer workers than asked would hide the failure, so the
server exits non-zero and whatever supervises it restarts it whole. The other way
round too: a worker whose first process is gone (even killed with -9) stops within a
second, so that no orphan serves beside the next generation with no persister behind
it (the lifeline pipe, ``watch_parent``, and on Linux ``die_with_parent``).

``wait_for_signal`` is shared by ``serve`` and the demo (which imports
it from here, not from the CLI: nothing imports the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from dropgate.settings import env_name

log = logging.getLogger("dropgate.workers")
READY_PREFIX = "dropgate: serving on "
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


class WorkerFailed(RuntimeError):
    """A worker could not start: the server does not start either."""


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def worker_env(environ: Mapping[str, str], redis_url: str, database_url: str,
               log_level: str) -> dict[str, str]:
    """The first process's environment, pinned to the stores it resolved: a worker must
    attach to them, never start embedded servers of its own."""
    env = dict(environ)
    env[env_name("redis_url")] = redis_url
    env[env_name("database_url")] = database_url
    env[env_name("workers")] = "1"
    env[env_name("log_level")] = log_level
    return env


@dataclass
class Workers:
    """The extra worker processes of one server and their output."""

    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)
    # the write end of the lifeline: held by this process only, never written; when it
    # dies (even by kill -9) the kernel closes it and every worker reads end-of-file
    _lifeline: int | None = None

    async def start(self, count: int, host: str, port: int, env: dict[str, str],
                    board_fd: int | None = None) -> None:
        """``board_fd``: the first process's admission board (http/admission.py), which
        worker ``index`` attaches at slot ``index``."""
        if count < 1:
            return
        read_end, self._lifeline = os.pipe()  # both non-inheritable (PEP 446)
        board = () if board_fd is None else ("--admission-fd", str(board_fd))
        try:
            for index in range(1, count + 1):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "dropgate", "serve", "--host", host, "--port", str(port),
                    "--no-persister", "--reuse-port", "--parent-fd", str(read_end),
                    *board, "--worker-index", str(index), env=env, stdout=asyncio.subprocess.PIPE,
                    pass_fds=(read_end,) if board_fd is None else (read_end, board_fd))
                self.procs.append(proc)
                await self._until_ready(index, proc)
                self._pumps.append(asyncio.create_task(self._pump(index, proc)))
        finally:
            os.close(read_end)

    @staticmethod
    async def _until_ready(index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        seen: list[str] = []

        async def ready() -> None:
            assert proc.stdout is not None
            while line := (await proc.stdout.readline()).decode(errors="replace"):
                if line.startswith(READY_PREFIX):
                    return
                seen.append(line)
            raise WorkerFailed(f"worker {index} exited before serving (exit code "
                               f"{await proc.wait()}): {''.join(seen).strip() or 'no output'}")

        try:
            await asyncio.wait_for(ready(), _START_TIMEOUT_S)
        except TimeoutError:
            raise WorkerFailed(f"worker {index} did not start within {_START_TIMEOUT_S:.0f}s") from None

    @staticmethod
    async def _pump(index: int, proc: asyncio.subprocess.Process) -> None:
        """Forward a worker's later output (its shutdown line), marked as its own."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            print(f"worker {index}: {line.decode(errors='replace').rstrip()}", flush=True)

    async def first_exit(self) -> int:
        """Until any worker exits; its exit code."""
        if not self.procs:
            await asyncio.Event().wait()  # no extra workers: nothing can exit
        waits = [asyncio.ensure_future(proc.wait()) for proc in self.procs]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return next(iter(done)).result()

    async def stop(self) -> None:
        """SIGTERM every worker (each drains like a single server), then wait; kill a
        worker that does not stop in time."""
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("worker pid %d did not stop within %.0fs; killing it", proc.pid, _STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for pump in self._pumps:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, 5)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Second line behind the lifeline (``watch_parent``): on Linux, ask the kernel
    for SIGTERM when the process that started this worker dies. A parent already gone
    before the request (reparented: another parent pid) is caught by the lifeline."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the lifeline alone
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable")


async def watch_parent(fd: int) -> None:
    """Until the first process is gone: the lifeline pipe read from ``fd`` reaches
    end-of-file (its only writer, the first process, exited or was killed)."""
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data and not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)


@contextlib.asynccontextmanager
async def extra_workers(count: int, host: str, port: int, env: dict[str, str],
                        board_fd: int | None = None) -> AsyncIterator[Workers]:
    """``count`` more ``serve`` processes on ``host:port`` for the block, stopped after it
    (also when one of them fails to start)."""
    workers = Workers()
    try:
        await workers.start(count, host, port, env, board_fd)
        yield workers
    finally:
        await workers.stop()


def effective_log_level() -> str:
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())

