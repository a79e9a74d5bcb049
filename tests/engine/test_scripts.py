"""Every Lua script: header matches file name and caller; NOSCRIPT reloads transparently."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from redis.asyncio import Redis

import dropgate
from dropgate.embedded import redis_server_binary
from dropgate.engine.keys import Keys
from dropgate.engine.scripts import LUA_DIR, Scripts, load_sources
from dropgate.engine.tenants import Tenants
from dropgate.errors import ERRORS, NotFound

PACKAGE = Path(dropgate.__file__).parent


def _python_sources() -> str:
    return "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))


def test_every_header_matches_its_file_and_caller() -> None:
    sources = load_sources()
    assert sources, "no scripts found"
    python = _python_sources()
    for name, src in sources.items():
        assert src.declared_keys == tuple(range(1, src.num_keys + 1)), (
            f"{src.path.name}: header lists KEYS {src.declared_keys}, file name says {src.num_keys}")
        assert "ARGV" in src.header or "ARGV" not in src.text, f"{name}: ARGV used but not in header"
        used_argv = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", src.path.read_text().split("]]", 1)[1])}
        declared_argv = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", src.header)}
        assert used_argv <= declared_argv, f"{name}: ARGV {used_argv - declared_argv} not in header"
        assert "Returns" in src.header, f"{name}: header names no return value"
        assert re.search(r"^\s*Errors:", src.header, re.M), f"{name}: header has no Errors: line"
        for code in src.declared_errors:
            assert code in ERRORS, f"{name}: unknown error code {code}"
        for code in re.findall(r"dg_error\('([A-Z_]+)'", src.text):
            assert code in src.declared_errors, f"{name}: answers {code} but its header does not say so"
        assert f'"{name}"' in python, f"no Python caller of {name}"
        assert "@include" not in src.text, f"{name}: unexpanded include"


def test_lib_functions_are_one_per_file() -> None:
    for path in (LUA_DIR / "lib").glob("*.lua"):
        functions = re.findall(r"^local function (\w+)", path.read_text(), re.M)
        assert functions == [path.stem], path.name


@pytest.fixture
async def private_redis() -> Redis:  # type: ignore[misc]
    """A Redis of this test's own: SCRIPT FLUSH must not touch a shared server."""
    folder = Path(tempfile.mkdtemp(prefix="dg-scripts-", dir="/tmp"))
    sock = folder / "r.sock"
    proc = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = Redis(unix_socket_path=str(sock))
    try:
        for _ in range(200):
            try:
                await client.ping()
                break
            except Exception:
                import asyncio

                await asyncio.sleep(0.02)
        yield client
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(10)


async def test_script_flush_is_survived(private_redis: Redis, settings: object) -> None:
    from dropgate.engine.context import EngineContext
    from dropgate.settings import Settings

    assert isinstance(settings, Settings)
    keys = Keys("sf", 4)
    scripts = Scripts(private_redis)
    await scripts.load_all()
    tenants = Tenants(EngineContext(redis=private_redis, scripts=scripts, keys=keys, settings=settings))
    await tenants.create("a", name="a", status="active", trial_end_ms=None)
    await private_redis.script_flush()
    await tenants.create("b", name="b", status="active", trial_end_ms=None)  # reloaded on NOSCRIPT
    assert (await tenants.get("b")).status == "active"
    with pytest.raises(NotFound):
        await tenants.set_subscription("nobody", status="active", trial_end_ms=None)


class _FlushAfterLoad:
    """The client, except that a flush lands right after each of its first ``times``
    SCRIPT LOADs: another operator's SCRIPT FLUSH between a reload and its EVALSHA."""

    def __init__(self, client: Redis, times: int) -> None:
        self._client = client
        self.times = times

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    async def script_load(self, script: str) -> str:
        sha = str(await self._client.script_load(script))
        if self.times > 0:
            self.times -= 1
            await self._client.script_flush()
        return sha


async def test_a_flush_between_the_reload_and_the_retry_is_survived(
        private_redis: Redis, settings: object) -> None:
    """redis-py reloads once on NOSCRIPT; flushes in quick succession (the fault lab's
    SCRIPT FLUSH x5 under load) can land in that window, and the call must still run
    (NOSCRIPT means it did not run), not answer 503."""
    from dropgate.engine.context import EngineContext
    from dropgate.settings import Settings

    assert isinstance(settings, Settings)
    flushing = _FlushAfterLoad(private_redis, times=2)
    scripts = Scripts(flushing)  # type: ignore[arg-type]
    tenants = Tenants(EngineContext(redis=private_redis, scripts=scripts, keys=Keys("sf2", 4),
                                    settings=settings))
    await private_redis.script_flush()
    await tenants.create("a", name="a", status="active", trial_end_ms=None)
    assert flushing.times == 0  # both flushes landed between a reload and its EVALSHA
    assert (await tenants.get("a")).status == "active"
