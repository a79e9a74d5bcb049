"""Shared by the hostile-client tests (tests/http/test_hostile_*.py) and ``make soak``: a real
``dropgate serve`` (optionally under an open-file limit), raw sockets, and probes."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from dropgate.settings import Settings
from tests.engine.test_actors_processes import _env, _free_port

__all__ = ["Crowd", "Serve", "free_port", "port_answers", "probe", "raw_exchange"]

free_port = _free_port


class Serve:
    """``dropgate serve --workers N`` in a subprocess, its output in a log file."""

    def __init__(self, settings: Settings, log: Path, *, workers: int = 1, nofile: int | None = None,
                 port: int | None = None, env: Mapping[str, str] | None = None,
                 persister: bool = False) -> None:
        self.port = port or free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "dropgate", "serve", "--port", str(self.port),
                   "--workers", str(workers)]
        if not persister:
            command.append("--no-persister")
        full_env = {**_env(settings), **(env or {})}

        def limit_files() -> None:  # as `prlimit --nofile=N`, in the child before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with log.open("wb") as out:
            self.proc = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=limit_files)

    def wait_serving(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while "dropgate: serving on" not in (text := self.log.read_text(errors="replace")):
            assert self.proc.poll() is None, f"dropgate serve exited:\n{text}"
            assert time.monotonic() < deadline, f"dropgate serve did not start:\n{text}"
            time.sleep(0.1)
        return text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Crowd:
    """Slow sockets of three kinds, dripping until the server closes them."""

    port: int
    admin_key: str
    closed_after: dict[str, list[float]] = field(default_factory=lambda: {"idle": [], "head": [], "body": []})
    refused: int = 0

    async def one(self, kind: str, drip_s: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused += 1
            return
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
                for kind in ("idle", "head", "body") for _ in range(per_kind)]


async def probe(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    """Seconds one GET took; it must answer 200 or 404 (an API route, an unknown tenant)."""
    started = time.monotonic()
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
        assert r.status in (200, 404), r.status
        await r.read()
    return time.monotonic() - started



def port_answers(port: int) -> bool:
    """Whether anything accepts a TCP connection on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def raw_exchange(port: int, request: bytes, *, wait_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes after a refusal):
    status, headers (lower-case names), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait_s)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), wait_s) if length else b""
        return status, headers, body
    finally:
        writer.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
