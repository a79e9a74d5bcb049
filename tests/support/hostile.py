"""Shared by the hostile-client tests (tests/http/test_hostile_*.py, test_keys_revocation.py)
and their long variants (``make soak``: tests/support/hostile_soak.py and the faults of
tests/support/faultlab.py): a real ``dropgate serve`` (optionally under an open-file limit),
raw sockets, probes, and each hostile scenario with the invariant it must keep."""

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
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from dropgate.settings import Settings
from tests.engine.test_actors_processes import _env, _free_port
from tests.support.processes import stop_processes
from tests.support.slowcrowd import Crowd, CrowdProcess

__all__ = ["Crowd", "CrowdProcess", "Serve", "alive", "buy", "check_retry_storm", "error_shape",
           "free_port", "kill9_first_process", "listeners", "parser_refusals", "port_answers", "probe",
           "raw_exchange", "request_bytes", "retry_storm", "revoke_under_warm_caches", "slow_socket_wave"]

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
        stop_processes([self.proc], timeout_s=60)


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


def listeners(port: int) -> set[int]:
    """The pids with a listening TCP socket on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


# -- the scenarios, each with its invariant ----------------------------------------------

# Short server timeouts (settings) for slow sockets, so that a wave is shed in seconds.
SHORT_TIMEOUTS = {"head": 1.0, "body": 1.0, "idle": 1.5}  # per kind of slow socket
SHORT_ENV = {"DROPGATE_HTTP_HEADER_TIMEOUT_S": str(SHORT_TIMEOUTS["head"]),
             "DROPGATE_HTTP_BODY_GRACE_S": str(SHORT_TIMEOUTS["body"]),
             "DROPGATE_HTTP_BODY_MIN_RATE": "1024",
             "DROPGATE_HTTP_IDLE_TIMEOUT_S": str(SHORT_TIMEOUTS["idle"])}
CLOSE_WAIT_S = 15.0
# A per-user rate limit tight enough to refuse every retry of a storm if retries spent it.
TIGHT_RATE_ENV = {"DROPGATE_RATE_LIMIT_BURST": "2", "DROPGATE_RATE_LIMIT_PER_S": "0.1"}


async def slow_socket_wave(port: int, admin_key: str, *, per_kind: int, drip_s: float,
                           timeouts: Mapping[str, float] = SHORT_TIMEOUTS, min_rounds: int = 15) -> str:
    """``per_kind`` idle, header-dripping and body-dripping sockets (from a process of their
    own, as an attacker's would be: this loop only probes, so a probe's time is the
    server's answer, not this loop's backlog) against a server with ``timeouts``.
    Invariants: every /healthz and API probe, while the crowd connects, is open and is
    being shed (at least ``min_rounds`` rounds and 1 s past its last connect), answers
    within 1 s; every slow socket is closed by the server within its timeout (plus the
    watchdog's sweep and a noisy machine's margin). A summary line."""
    url = f"http://127.0.0.1:{port}"
    crowd = await CrowdProcess.start(port, admin_key, per_kind=per_kind, drip_s=drip_s, wait_s=CLOSE_WAIT_S)
    try:
        connected = asyncio.create_task(crowd.connected())
        admin = {"Authorization": f"Bearer {admin_key}"}
        took: list[float] = []
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probes:
            rounds, after, rounds_at = 0, 0.0, -1
            while rounds < min_rounds or not connected.done() or loop.time() < after:
                assert rounds < 300, "the crowd never finished connecting"
                took.append(await probe(probes, url + "/healthz", {}))
                took.append(await probe(probes, url + "/v1/tenants/nobody", admin))
                await asyncio.sleep(0.1)
                rounds += 1
                if connected.done() and not after:
                    connected.result()
                    after = loop.time() + 1.0
                    rounds_at = rounds
        slowest = sorted(enumerate(took), key=lambda x: x[1])[-4:]  # (probe number, s)
        assert max(took) < 1.0, \
            f"a probe took over 1 s: {len(took)} probes, crowd connected at probe {2 * rounds_at}; slowest {slowest}"
        outcome = await crowd.result()
        assert outcome["pending"] == {"idle": 0, "head": 0, "body": 0}, \
            f"slow sockets still open after {CLOSE_WAIT_S} s: {outcome['pending']}"
        for kind, after_s in outcome["closed_after"].items():
            assert after_s, f"no {kind} socket was ever closed"
            assert max(after_s) < timeouts[kind] + 6.0, \
                f"a {kind} socket was closed after {max(after_s):.1f} s (timeout {timeouts[kind]} s)"
    finally:
        crowd.kill()
    closed = {kind: f"{max(s):.1f}" for kind, s in outcome["closed_after"].items()}
    return (f"{3 * per_kind} slow sockets ({outcome['refused']} refused), {len(took)} probes, "
            f"slowest {max(took) * 1000:.0f} ms; all closed, last after {closed} s")


async def buy(http: aiohttp.ClientSession, url: str, offer: str, headers: Mapping[str, str],
              user: str) -> tuple[int, bytes]:
    """One purchase of one unit: status and raw body."""
    async with http.post(f"{url}/v1/offers/{offer}/purchase", headers=dict(headers),
                         json={"user_id": user, "quantity": 1}) as r:
        return r.status, await r.read()


async def retry_storm(http: aiohttp.ClientSession, url: str, offer: str, headers: Mapping[str, str],
                      user: str, key: str) -> list[tuple[int, bytes]]:
    """20 concurrent copies and then 5 sequential ones of one purchase under one
    ``Idempotency-Key`` (``http`` should force a connection each, so that every worker
    takes copies): their answers, in order."""
    retry = {**headers, "Idempotency-Key": key}
    answers = list(await asyncio.gather(*(buy(http, url, offer, retry, user) for _ in range(20))))
    for _ in range(5):
        answers.append(await buy(http, url, offer, retry, user))
    return answers


def check_retry_storm(answers: list[tuple[int, bytes]]) -> None:
    """Only the identical 201 or 409 IDEMPOTENCY_KEY_IN_USE, never 429, and the last
    sequential retry gets the answer."""
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 409}, f"a retry under one Idempotency-Key got other than 201/409: {statuses}"
    created = {raw for status, raw in answers if status == 201}
    assert len(created) == 1, f"{len(created)} different 201 answers under one Idempotency-Key"
    codes = {msgspec.json.decode(raw)["code"] for status, raw in answers if status == 409}
    assert codes <= {"IDEMPOTENCY_KEY_IN_USE"}, f"a retry got 409 {codes}"
    assert statuses[-1] == 201, f"the last sequential retry got {statuses[-1]}, not the answer"


async def revoke_under_warm_caches(url: str, admin: Mapping[str, str], tenant: str, *,
                                   connections: int = 40, after_n: int = 400) -> str:
    """A service key of ``tenant``, freshly minted, warms ``connections`` kept-alive
    connections (so every worker's cache), which keep using it while an admin revokes it.
    Invariant: of the requests sent after ``DELETE /v1/keys/{id}`` answered (at least
    ``after_n``), none succeeds; every one is 401."""
    async with aiohttp.ClientSession() as http, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as crowd:
        async with http.post(url + "/v1/keys", headers=dict(admin),
                             json={"role": "service", "tenant_id": tenant, "name": "victim"}) as r:
            assert r.status == 201, f"minting a key: {r.status} {await r.text()}"
            key: dict[str, Any] = await r.json()
        victim = {"Authorization": f"Bearer {key['key']}"}

        async def get() -> int:
            async with crowd.get(url + "/v1/tenant", headers=victim) as r:
                await r.read()
                return r.status

        warm = await asyncio.gather(*(get() for _ in range(connections * 10)))
        assert warm.count(200) == len(warm), f"the fresh key was refused while warming: {sorted(set(warm))}"
        revoked_at: list[float] = []
        after: list[int] = []
        stop = asyncio.Event()

        async def hammer() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                status = await get()
                if revoked_at and sent > revoked_at[0]:
                    after.append(status)

        tasks = [asyncio.create_task(hammer()) for _ in range(connections)]
        try:
            await asyncio.sleep(0.5)
            async with http.delete(url + f"/v1/keys/{key['key_id']}", headers=dict(admin)) as r:
                assert r.status == 204, f"revoking the key: {r.status}"
            revoked_at.append(time.monotonic())
            deadline = time.monotonic() + 60
            while len(after) < after_n and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    assert len(after) >= after_n, f"only {len(after)} requests after the revocation in 60 s"
    assert after.count(200) == 0 and set(after) == {401}, \
        f"the revoked key still served: {after.count(200)} successes of {len(after)} after revocation"
    return f"key {key['key_id']} revoked under {connections} warm connections; {len(after)} requests after, all 401"


def request_bytes(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: t"]
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


SECRET = "SECRET-never-echoed"


def parser_refusals(admin_key: str) -> list[bytes]:
    """Requests the HTTP parser (or the body decoder) refuses: each must be a 400
    VALIDATION_ERROR in the error shape, without echo of ``SECRET``."""
    return [
        b"GARBAGE\r\n\r\n",  # no request line
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",  # header without a colon
        # a header over 8 KB: the parser's message would quote the Authorization value
        b"GET /v1/tenants HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + SECRET.encode()
        + b"A" * 9000 + b"\r\n\r\n",
        b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",  # request line too long
        b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        # make fuzz: a Content-Length that is no number, on a GET (its 400 had no X-Request-Id)
        b"GET /v1/purchases/.c HTTP/1.1\r\nHost: t\r\ncontent-length: co|b.a=1r\tl\r\n\r\n",
        b"GET /v1/tenants/caf\xe9 HTTP/1.1\r\nHost: t\r\n\r\n",  # raw Latin-1 in the path
        b"GET /v1/offers HTTP/1.1\r\nHost: t\r\nX-\xe9: 1\r\n\r\n",  # and in a header name
        b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        # a body that does not decode as its Content-Encoding says
        b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nAuthorization: Bearer " + admin_key.encode() + b"\r\n\r\nabcd",
    ]


def error_shape(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A 4xx in the error shape: JSON ``{error, code, details}``, no version banner, no echo
    of ``SECRET``; the document."""
    assert 400 <= status < 500, f"not a 4xx: {status} {body[:200]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"not JSON: {headers}"
    assert headers.get("server") == "dropgate", f"a version banner: {headers.get('server')}"
    assert headers.get("x-request-id"), f"no X-Request-Id, which every answer carries: {headers}"
    doc: dict[str, Any] = msgspec.json.decode(body)
    assert set(doc) == {"error", "code", "details"}, f"not the error shape: {doc}"
    assert SECRET not in body.decode("latin-1"), "the request was echoed"
    return doc


async def kill9_first_process(proc: subprocess.Popen[bytes], port: int) -> None:
    """kill -9 of the first process of ``serve --workers N`` (N > 1). Invariants: the port
    stops answering within 5 s, and every worker exits (no orphan serving)."""
    found = listeners(port)
    assert proc.pid in found and len(found) > 1, f"not a first process with workers on {port}: {found}"
    workers = found - {proc.pid}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 5
    while port_answers(port):
        assert time.monotonic() < deadline, "the port still answers 5 s after kill -9 of the first process"
        await asyncio.sleep(0.1)
    deadline = time.monotonic() + 30
    while orphans := {pid for pid in workers if alive(pid)}:
        assert time.monotonic() < deadline, f"orphaned workers {orphans} did not exit"
        await asyncio.sleep(0.1)
