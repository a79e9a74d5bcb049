"""The one Redis client factory: a single server or a Redis Cluster, from one URL.

``redis://`` / ``rediss://`` / ``unix://`` give a ``redis.asyncio.Redis`` on a blocking
pool. ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS)
gives a ``redis.asyncio.cluster.RedisCluster`` seeded with those nodes: every key of
a partition carries the hash tag ``{pN}``, so each script is one slot and runs on
that slot's master; MOVED/ASK redirections (resharding, failover) are followed by
the client. Commands that span slots (SCAN, multi-key DEL, one XREADGROUP over
several partitions) must go node by node or key by key: ``is_cluster`` tells the
callers, ``primaries`` gives the per-node clients.

The cluster client is typed as ``Redis`` for the rest of the code: it answers the
same single-key commands and scripts, and the few places that differ ask
``is_cluster`` first.

No client retries, on either: a script retried after a lost reply could apply
twice. A command that fails on a dead master raises (the request answers 503) and
the client refreshes its slot map before the next command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from dropgate.settings import parse_cluster_seeds

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class RedisUrlError(ValueError):
    """DROPGATE_REDIS_URL is malformed (said in one line)."""


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """``redis+cluster://[user:pass@]h1:p1,h2:p2`` -> [(h1, p1), (h2, p2)] (``settings.parse_cluster_seeds``)."""
    try:
        return parse_cluster_seeds(url)
    except ValueError as exc:
        raise RedisUrlError(
            f"DROPGATE_REDIS_URL: cluster seed {str(exc)!r} is not host:port "
            "(redis+cluster://host:port[,host:port...])") from None


def connect(url: str, *, max_connections: int, timeout_s: float, pool_wait_s: float) -> Redis:
    """A client for ``url``; ``max_connections`` per node on a cluster."""
    if is_cluster_url(url):
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        user, _, password = userinfo.partition(":")
        cluster = _QueueingCluster(
            max_connections, pool_wait_s,
            startup_nodes=[ClusterNode(h, p) for h, p in cluster_seeds(url)],
            username=unquote(user) or None,
            password=unquote(password) or None,
            ssl=parts.scheme == "rediss+cluster",
            max_connections=2 * max_connections + 4,  # pipelines bypass the queue: headroom
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            require_full_coverage=True,
        )
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,  # queueing under a crowd is not an outage
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    client = Redis(connection_pool=pool)
    # The logs' readers (the persister, the webhook dispatcher) take XREADGROUP's reply as
    # the server sent it: redis-py's parse makes a dict per entry and a list of tuples per
    # stream, which ``events.parse_entry`` reads once more (a quarter of the reader's CPU for
    # a read, about 0.6 µs per event: BENCHMARKS.md, "The persister's reads as the server
    # sent them").
    # ``claims.by_partition`` reads either shape, so a client made elsewhere works too.
    client.set_response_callback("XREADGROUP", _as_sent)
    return client


def _as_sent(response: Any, **_options: Any) -> Any:
    return response


class _QueueingCluster(RedisCluster):
    """A RedisCluster whose commands wait for a free connection, as the single-server
    ``BlockingConnectionPool`` does: redis-py's cluster nodes raise
    ``MaxConnectionsError`` at once instead, and a crowd is not an outage. At most
    ``limit`` commands are in flight, so no node ever runs out of connections."""

    # Redirections and TRYAGAIN answers one command may follow. redis-py's 16 give a
    # multi-key script about 0.4 s of TRYAGAIN (a slot half migrated: its keys on two
    # nodes) before "TTL exhausted"; a live reshard of a busy partition moves its keys
    # for longer than that. 120 wait about 3 s (0.05 s a try past the first half).
    # TRYAGAIN, MOVED and ASK are answered before a script runs, so following them
    # longer never runs a script twice.
    RedisClusterRequestTTL = 120

    def __init__(self, limit: int, wait_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = asyncio.Semaphore(limit)
        self._gate_wait_s = wait_s

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            await asyncio.wait_for(self._gate.acquire(), timeout=self._gate_wait_s)
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._gate.release()


    async def evalsha_then_wait(self, sha: str, keys: list[str], args: list[Any],
                                replicas: int, timeout_ms: int) -> tuple[Any, int]:
        """EVALSHA and WAIT on ONE connection to the master of ``keys[0]``'s slot: WAIT
        counts the writes of its own connection. Raises the script's error (NOSCRIPT,
        MOVED, ASK: the script did not run, the caller goes the ordinary way)."""
        try:
            await asyncio.wait_for(self._gate.acquire(), timeout=self._gate_wait_s)
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        try:
            await self.initialize()
            node = self.get_node_from_key(keys[0])
            if node is None:
                raise RedisConnectionError(f"no master serves the slot of {keys[0]!r}")
            conn = node.acquire_connection()
            try:
                await conn.send_packed_command(conn.pack_commands([
                    ("EVALSHA", sha, len(keys), *keys, *args), ("WAIT", replicas, timeout_ms)]))
                script_error: Exception | None = None
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # the reply was read whole: WAIT's is next
                    script_error, reply = exc, None
                acked = int(await conn.read_response())
            except BaseException:
                await conn.disconnect()
                raise
            finally:
                node.release(conn)
            if script_error is not None:
                raise script_error
            return reply, acked
        finally:
            self._gate.release()

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction:
            return _SlotTransactions(self)
        return super().pipeline(transaction, shard_hint)


class _SlotTransactions:
    """``pipeline(transaction=True)`` on a cluster: one MULTI/EXEC per hash slot.

    A cluster transaction must stay in one slot. dropgate needs atomicity per entity
    only (a reconcile round reads each entity's hash and collections together), and an
    entity's keys share its partition's hash tag, so grouping the queued commands by
    slot keeps that, while one pipeline may cover many partitions. Commands are queued
    as ``pipe.<command>(key, ...)``; replies come back in queueing order."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> _SlotTransactions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queued.clear()

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> _SlotTransactions:
            self._queued.append((name, args, kwargs))
            return self
        return queue

    async def execute(self) -> list[Any]:
        by_slot: dict[int, list[int]] = {}
        for i, (_, args, _kw) in enumerate(self._queued):
            by_slot.setdefault(self._cluster.keyslot(args[0]), []).append(i)
        replies: list[Any] = [None] * len(self._queued)
        for indexes in by_slot.values():
            async with RedisCluster.pipeline(self._cluster, transaction=True) as pipe:
                for i in indexes:
                    name, args, kwargs = self._queued[i]
                    getattr(pipe, name)(*args, **kwargs)
                for i, reply in zip(indexes, await pipe.execute(), strict=True):
                    replies[i] = reply
        self._queued.clear()
        return replies


async def eval_and_wait(redis: Redis, sha: str, keys: list[str], args: list[Any],
                        replicas: int, timeout_ms: int) -> tuple[Any, int]:
    """Run a loaded script, then WAIT for ``replicas`` replicas on the same connection.
    Returns (the script's reply, replicas that acknowledged). The script's own error
    (NOSCRIPT, MOVED, ...) is raised: it did not run."""
    if is_cluster(redis):
        cluster = cast(_QueueingCluster, redis)
        return await cluster.evalsha_then_wait(sha, keys, args, replicas, timeout_ms)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        reply, acked = await pipe.execute(raise_on_error=True)
    return reply, int(acked)


def is_cluster(redis: Redis) -> bool:
    return isinstance(redis, RedisCluster)


def as_cluster(redis: Redis) -> RedisCluster:
    return cast(RedisCluster, redis)


async def primaries(redis: Redis) -> list[Redis]:
    """One client per master (the client itself on a single server). The callers
    own nothing: the node clients share the cluster client's connections."""
    if not is_cluster(redis):
        return [redis]
    cluster = as_cluster(redis)
    await cluster.initialize()
    return [cast(Redis, _NodeClient(cluster, node)) for node in cluster.get_primaries()]


class _NodeClient:
    """The few node-wide commands callers need, sent to one node of a cluster."""

    def __init__(self, cluster: RedisCluster, node: Any) -> None:
        self._cluster = cluster
        self._node = node

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self._cluster.execute_command(*args, target_nodes=self._node, **kwargs)

    async def scan(self, cursor: int = 0, match: str | None = None,
                   count: int | None = None, **kwargs: Any) -> Any:
        args: list[Any] = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        # straight to the node: the cluster client would merge replies per node
        cursor_raw, keys = await self._node.execute_command(*args)
        return int(cursor_raw), keys

    async def scan_iter(self, match: str | None = None, count: int | None = None,
                        **kwargs: Any) -> AsyncIterator[bytes]:
        cursor = -1
        while cursor != 0:
            cursor, keys = await self.scan(max(cursor, 0), match=match, count=count)
            for key in keys:
                yield key

    async def info(self, section: str | None = None) -> Any:
        args = ["INFO"] if section is None else ["INFO", section]
        return await self._node.execute_command(*args)


async def eviction_policies(redis: Redis) -> list[str | None]:
    """Each master's ``maxmemory-policy`` (None where CONFIG is forbidden, as managed
    Redis services may do)."""
    out: list[str | None] = []
    for node in await primaries(redis):
        try:
            reply = await node.execute_command("CONFIG", "GET", "maxmemory-policy")  # type: ignore[no-untyped-call]
        except Exception:
            out.append(None)
            continue
        values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1::2]
        raw = next((v for v in values if v is not None), None)
        out.append(raw.decode() if isinstance(raw, bytes) else raw)
    return out


async def scan_pages(scan: Callable[..., Awaitable[Any]], *key: str, count: int,
                     **options: Any) -> AsyncIterator[Any]:
    """Each page of one cursor walk, as Redis answers it: ``SCAN`` (``node.scan``), or
    ``SSCAN`` / ``HSCAN`` of ``key`` (``redis.hscan``): batches, not one item at a time."""
    cursor = 0
    while True:
        cursor, page = await scan(*key, cursor, count=count, **options)
        yield page
        if cursor == 0:
            return


async def delete_keys(redis: Redis, keys: list[bytes]) -> int:
    """DEL a batch of keys that may sit in different slots (one DEL per key on a cluster)."""
    if not keys:
        return 0
    if not is_cluster(redis):
        return int(await redis.delete(*keys))
    deleted = 0
    for i in range(0, len(keys), 16):  # a few at a time: a cleanup is no crowd
        results = await asyncio.gather(*(redis.delete(k) for k in keys[i:i + 16]))
        deleted += sum(int(r) for r in results)
    return deleted


async def cluster_state(redis: Redis) -> dict[str, str]:
    """``{"node": "cluster_state"}`` for every master (``{}`` on a single server)."""
    if not is_cluster(redis):
        return {}
    cluster = as_cluster(redis)
    await cluster.initialize()
    out: dict[str, str] = {}
    for node in cluster.get_primaries():
        try:
            raw = await node.execute_command("CLUSTER INFO")
        except Exception as exc:  # a dead master: its state is the answer
            out[node.name] = f"unreachable ({type(exc).__name__})"
            continue
        out[node.name] = _cluster_state_of(raw)
    return out


def _cluster_state_of(raw: Any) -> str:
    if isinstance(raw, dict):
        return str(raw.get("cluster_state", "unknown"))
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "unknown"
