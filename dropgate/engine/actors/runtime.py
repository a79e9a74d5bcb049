"""Actors: one asyncio task per key, a bounded mailbox, one message at a time.

An ``ActorSystem`` owns the actors of one kind (tenants, hot offers, ...):

- ``await system.ask(key, fn)`` queues ``fn`` in the mailbox of the actor for
  ``key`` (spawned on first use) and returns what ``await fn(actor)`` returns.
  Messages of one key run one at a time, in arrival order (turn-based), so the
  actor's own state needs no locks and its operations are ordered.
- A full mailbox refuses at once (``TenantBusy``, 503) instead of queueing
  without bound.
- An exception raised by a message goes to that message's caller only; the actor
  carries on with the next message.
- An actor idle for ``idle_s`` passivates: it leaves the registry, runs
  ``on_passivate`` and its task ends; the next message spawns a fresh activation,
  which reloads its state in ``on_activate``. ``passivate_idle()`` does the same
  sweep on demand (tests, and the run-once style of every long-running object).
- ``close()`` refuses new messages, lets every actor finish what is queued, then
  passivates them all (bounded by a timeout).

Nothing here knows about tenants or Redis: ``tenant.py`` builds the tenant actor
on top, and other domains may run their own systems (one per kind of actor).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dropgate.engine.actors.mailbox import Mailbox
from dropgate.errors import DropgateError, TenantBusy, Unavailable

log = logging.getLogger(__name__)

R = TypeVar("R")
TURN_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


class Actor:
    """Base of an actor: its key, and hooks around its life. Subclasses add state
    and the operations messages call (``await system.ask(key, lambda a: a.op(...))``)."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def on_activate(self) -> None:
        """Before the first message: load state. Raising fails the queued messages."""

    async def on_passivate(self) -> None:
        """After the last message: release what the activation holds."""


A = TypeVar("A", bound=Actor)


class LatencyHistogram:
    """Cumulative-bucket histogram (Prometheus' shape) without a metrics dependency."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = TURN_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """(upper bound, observations <= it), ending with ("+Inf", count)."""
        total = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            total += n
            yield repr(bound), total
        yield "+Inf", self.count


@dataclass
class ActorStats:
    activations: int = 0
    activation_failures: int = 0
    passivations: int = 0
    turns: int = 0
    failed_turns: int = 0
    rejected: int = 0
    turn_seconds: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(eq=False)
class _Envelope:
    fn: Callable[[Any], Awaitable[Any]]
    future: asyncio.Future[Any]


@dataclass(eq=False)
class _Activation(Generic[A]):
    actor: A
    mailbox: Mailbox[_Envelope]
    task: asyncio.Task[None] | None = None
    in_turn: bool = False
    stopping: bool = False
    last_turn_end: float = field(default_factory=time.monotonic)


class ActorSystem(Generic[A]):
    """The registry and runner of one kind of actor."""

    def __init__(
        self,
        name: str,
        factory: Callable[[str], A],
        *,
        mailbox_size: int,
        idle_s: float,
        key_field: str = "key",
    ) -> None:
        if idle_s <= 0:
            raise ValueError("idle_s must be > 0")
        self.name = name
        self.mailbox_size = mailbox_size
        self.idle_s = idle_s
        self.stats = ActorStats()
        self._factory = factory
        self._key_field = key_field
        self._activations: dict[str, _Activation[A]] = {}
        self._stopping: set[_Activation[A]] = set()
        self._closed = False

    # -- asking ------------------------------------------------------------------------
    async def ask(self, key: str, fn: Callable[[A], Awaitable[R]]) -> R:
        """Run ``fn(actor)`` in the actor's next free turn and return its result."""
        if self._closed:
            raise Unavailable("The server is shutting down; retry on another instance.")
        act = self._activations.get(key)
        if act is None:
            act = self._spawn(key)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        if not act.mailbox.offer(_Envelope(fn, future)):
            self.stats.rejected += 1
            raise TenantBusy(details={self._key_field: key, "mailbox_size": self.mailbox_size,
                                      "retry_after_s": 1})
        return await future

    # -- introspection -----------------------------------------------------------------
    @property
    def active(self) -> int:
        return len(self._activations)

    def is_active(self, key: str) -> bool:
        return key in self._activations

    def actor(self, key: str) -> A | None:
        act = self._activations.get(key)
        return act.actor if act is not None else None

    def mailbox_depths(self) -> list[int]:
        return [len(a.mailbox) for a in self._activations.values()]

    # -- passivation and shutdown --------------------------------------------------------
    async def passivate_idle(self, *, idle_for_s: float = 0.0) -> int:
        """Passivate every actor with an empty mailbox, not in a turn, idle that long.
        Returns how many; waits until their ``on_passivate`` has run."""
        now = time.monotonic()
        chosen = [a for a in self._activations.values()
                  if not a.in_turn and not len(a.mailbox) and now - a.last_turn_end >= idle_for_s]
        for act in chosen:
            self._stop(act)
        await self._wait([a.task for a in chosen if a.task is not None], timeout_s=None)
        return len(chosen)

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Refuse new messages, finish the queued ones, passivate every actor."""
        self._closed = True
        acts = [*self._activations.values(), *self._stopping]
        for act in acts:
            self._stop(act)
        tasks = [a.task for a in acts if a.task is not None]
        pending = await self._wait(tasks, timeout_s=timeout_s)
        for task in pending:
            log.warning("actor system %s: %s did not drain in %.1fs; cancelled",
                        self.name, task.get_name(), timeout_s)
            task.cancel()
        await self._wait(list(pending), timeout_s=None)

    @staticmethod
    async def _wait(tasks: list[asyncio.Task[None]], *, timeout_s: float | None) -> set[asyncio.Task[None]]:
        if not tasks:
            return set()
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return pending

    def _stop(self, act: _Activation[A]) -> None:
        """Take ``act`` out of the registry (new messages spawn a new activation) and
        let it finish what it has queued, then passivate."""
        self._retire(act)
        act.stopping = True
        act.mailbox.wake()

    # -- the actor's task ----------------------------------------------------------------
    def _spawn(self, key: str) -> _Activation[A]:
        act: _Activation[A] = _Activation(actor=self._factory(key),
                                          mailbox=Mailbox(self.mailbox_size))
        self._activations[key] = act
        act.task = asyncio.create_task(self._run(act), name=f"actor:{self.name}:{key}")
        return act

    async def _run(self, act: _Activation[A]) -> None:
        try:
            await act.actor.on_activate()
        except Exception as exc:
            self.stats.activation_failures += 1
            log.warning("actor %s:%s failed to activate: %r", self.name, act.actor.key, exc)
            self._retire(act)
            for queued in act.mailbox.drain():
                if not queued.future.done():
                    queued.future.set_exception(exc)
            self._stopping.discard(act)
            return
        self.stats.activations += 1
        try:
            while True:
                env = act.mailbox.take_nowait()
                if env is not None:
                    await self._turn(act, env)
                    continue
                if act.stopping:
                    break
                if not await act.mailbox.wait(self.idle_s) and not len(act.mailbox) and not act.stopping:
                    self._retire(act)  # idle: nothing can reach this mailbox any more
                    break
        finally:
            self._retire(act)
            leftover = act.mailbox.drain()
            for env in leftover:
                if not env.future.done():
                    env.future.set_exception(Unavailable("The actor stopped; retry."))
            try:
                await act.actor.on_passivate()
            except Exception:
                log.exception("actor %s:%s failed to passivate", self.name, act.actor.key)
            self.stats.passivations += 1
            self._stopping.discard(act)

    def _retire(self, act: _Activation[A]) -> None:
        """Out of the registry (no new mail can reach it), still tracked until it ends."""
        if self._activations.get(act.actor.key) is act:
            del self._activations[act.actor.key]
        self._stopping.add(act)

    async def _turn(self, act: _Activation[A], env: _Envelope) -> None:
        if env.future.done():  # the caller gave up before its turn
            return
        act.in_turn = True
        started = time.perf_counter()
        try:
            result = await env.fn(act.actor)
        except Exception as exc:
            self.stats.failed_turns += 1
            if not isinstance(exc, DropgateError):
                log.warning("actor %s:%s: message failed: %r", self.name, act.actor.key, exc)
            if not env.future.done():
                env.future.set_exception(exc)
        except BaseException:
            if not env.future.done():
                env.future.set_exception(Unavailable("The actor stopped; retry."))
            raise
        else:
            if not env.future.done():
                env.future.set_result(result)
        finally:
            act.in_turn = False
            act.last_turn_end = time.monotonic()
            self.stats.turns += 1
            self.stats.turn_seconds.observe(time.perf_counter() - started)
