"""The actor runtime on its own: turns, mailbox bound, failures, passivation, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from dropgate.engine.actors import Actor, ActorSystem
from dropgate.errors import TenantBusy, Unavailable


class Counter(Actor):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.value = 0
        self.in_turn = False
        self.seen: list[int] = []
        self.activated = 0
        self.passivated = 0

    async def on_activate(self) -> None:
        self.activated += 1

    async def on_passivate(self) -> None:
        self.passivated += 1

    async def add(self, i: int) -> int:
        assert not self.in_turn, "two turns overlapped"
        self.in_turn = True
        value = self.value
        await asyncio.sleep(0)  # yield mid-turn: a second turn must not run now
        self.value = value + 1
        self.seen.append(i)
        self.in_turn = False
        return self.value


def system(**kw: object) -> ActorSystem[Counter]:
    args: dict[object, object] = {"mailbox_size": 1000, "idle_s": 60.0, **kw}
    return ActorSystem("test", Counter, **args)  # type: ignore[arg-type]


async def test_turns_run_one_at_a_time_in_arrival_order() -> None:
    s = system()
    results = await asyncio.gather(*(s.ask("k", lambda a, i=i: a.add(i)) for i in range(500)))
    assert sorted(results) == list(range(1, 501))
    actor = s.actor("k")
    assert actor is not None and actor.value == 500
    assert actor.seen == list(range(500))  # arrival order
    assert s.stats.turns == 500 and s.stats.activations == 1
    await s.close()


async def test_a_failing_message_fails_its_caller_only() -> None:
    s = system()

    async def boom(a: Counter) -> int:
        raise ValueError("bad message")

    results = await asyncio.gather(
        s.ask("k", lambda a: a.add(0)), s.ask("k", boom), s.ask("k", lambda a: a.add(1)),
        return_exceptions=True,
    )
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2] == 2
    actor = s.actor("k")
    assert actor is not None and actor.activated == 1  # the same activation carried on
    assert await s.ask("k", lambda a: a.add(2)) == 3
    assert s.stats.failed_turns == 1
    await s.close()


async def test_full_mailbox_refuses_with_tenant_busy() -> None:
    s = system(mailbox_size=5)
    gate = asyncio.Event()

    async def blocked(a: Counter) -> str:
        await gate.wait()
        return "released"

    first = asyncio.create_task(s.ask("k", blocked))
    await asyncio.sleep(0)  # the actor takes the first message: the mailbox is empty again
    await asyncio.sleep(0)
    queued = [asyncio.create_task(s.ask("k", lambda a, i=i: a.add(i))) for i in range(5)]
    await asyncio.sleep(0)
    with pytest.raises(TenantBusy) as refused:
        await s.ask("k", lambda a: a.add(99))
    assert refused.value.status == 503
    assert refused.value.details["mailbox_size"] == 5
    assert s.mailbox_depths() == [5]
    # another key is not affected by k's full mailbox
    assert await s.ask("other", lambda a: a.add(0)) == 1
    gate.set()
    assert await first == "released"
    assert sorted(await asyncio.gather(*queued)) == [1, 2, 3, 4, 5]
    assert s.stats.rejected == 1
    await s.close()


async def test_passivation_and_reactivation() -> None:
    s = system()
    await s.ask("k", lambda a: a.add(0))
    old = s.actor("k")
    assert old is not None
    assert await s.passivate_idle() == 1
    assert not s.is_active("k") and old.passivated == 1
    assert await s.ask("k", lambda a: a.add(0)) == 1  # a fresh activation (state is the actor's job)
    new = s.actor("k")
    assert new is not None and new is not old and new.activated == 1
    assert s.stats.activations == 2 and s.stats.passivations == 1
    await s.close()


async def test_idle_actor_passivates_by_itself() -> None:
    s = system(idle_s=0.02)
    await s.ask("k", lambda a: a.add(0))
    actor = s.actor("k")
    task = s._activations["k"].task
    assert actor is not None and task is not None
    await asyncio.wait_for(task, timeout=5)  # the actor's own idle timer ends its task
    assert actor.passivated == 1 and s.active == 0 and s.stats.passivations == 1


async def test_busy_actor_is_not_passivated_on_demand() -> None:
    s = system()
    gate = asyncio.Event()

    async def blocked(a: Counter) -> None:
        await gate.wait()

    task = asyncio.create_task(s.ask("k", blocked))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await s.passivate_idle() == 0
    gate.set()
    await task
    await s.close()


async def test_close_drains_queued_messages_then_refuses() -> None:
    s = system()
    gate = asyncio.Event()

    async def blocked(a: Counter) -> int:
        await gate.wait()
        return -1

    tasks = [asyncio.create_task(s.ask("k", blocked))]
    tasks += [asyncio.create_task(s.ask("k", lambda a, i=i: a.add(i))) for i in range(50)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(s.close())
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await s.ask("k", lambda a: a.add(0))
    gate.set()
    await closing
    results = await asyncio.gather(*tasks)
    assert results[0] == -1 and sorted(results[1:]) == list(range(1, 51))
    assert s.active == 0 and s.stats.passivations == 1


async def test_failed_activation_fails_queued_callers_and_retries_next_time() -> None:
    attempts = 0

    class Flaky(Counter):
        async def on_activate(self) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise ConnectionError("redis down")

    s: ActorSystem[Flaky] = ActorSystem("flaky", Flaky, mailbox_size=10, idle_s=60)
    results = await asyncio.gather(*(s.ask("k", lambda a: a.add(0)) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert not s.is_active("k")
    assert await s.ask("k", lambda a: a.add(0)) == 1
    assert s.stats.activation_failures == 1
    await s.close()


async def test_a_caller_that_gave_up_is_skipped() -> None:
    s = system()
    gate = asyncio.Event()

    async def blocked(a: Counter) -> None:
        await gate.wait()

    first = asyncio.create_task(s.ask("k", blocked))
    await asyncio.sleep(0)
    abandoned = asyncio.create_task(s.ask("k", lambda a: a.add(0)))
    await asyncio.sleep(0)
    abandoned.cancel()
    gate.set()
    await first
    assert await s.ask("k", lambda a: a.add(1)) == 1  # the abandoned message never ran
    await s.close()
