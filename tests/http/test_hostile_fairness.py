"""Per-tenant admission (issue 21, item 7): a flooding tenant waits in its own line, in
arrival order, while another tenant enters at once; a slot handed to a request that
was cancelled meanwhile goes to the next one; the line is bounded."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from dropgate.errors import TenantBusy
from dropgate.http.admission import Admission, Board, Slot


async def test_a_flood_waits_in_its_own_line_and_another_tenant_enters_at_once() -> None:
    admission = Admission(per_tenant=2, max_waiting=100)
    assert admission.try_enter("flood") and admission.try_enter("flood")
    assert not admission.try_enter("flood")
    order: list[int] = []

    async def waiter(i: int) -> None:
        await admission.enter("flood")
        order.append(i)

    waiters = [asyncio.create_task(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert order == []
    assert admission.try_enter("quiet")  # not behind the flood
    admission.leave("quiet")
    for _ in range(5):
        admission.leave("flood")
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3, 4]  # arrival order
    admission.leave("flood")
    admission.leave("flood")
    assert admission._lines == {}  # nothing kept for idle tenants


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    admission = Admission(per_tenant=1, max_waiting=100)
    assert admission.try_enter("t")
    first = asyncio.create_task(admission.enter("t"))
    second = asyncio.create_task(admission.enter("t"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    admission.leave("t")
    await asyncio.wait_for(second, 1)  # got the slot the cancelled one never took
    admission.leave("t")
    assert admission._lines == {}


async def test_the_line_is_bounded() -> None:
    admission = Admission(per_tenant=1, max_waiting=2)
    assert admission.try_enter("t")
    waiting = [asyncio.create_task(admission.enter("t")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(TenantBusy):
        await admission.enter("t")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_tenant_alone_keeps_the_large_bound_and_shares_the_smaller_one() -> None:
    clock = _Clock()
    admission = Admission(per_tenant=6, max_waiting=100, contended=2, clock=clock)
    for _ in range(6):  # alone: the large bound
        assert admission.try_enter("flood")
    assert not admission.try_enter("flood")
    assert admission.try_enter("quiet")  # saturated flood: the quiet tenant still enters at once
    assert admission.try_enter("quiet")
    assert admission.bound("flood") == 2 and admission.bound("quiet") == 2
    # the flood is over its shrunk bound: what it has admitted finishes, nothing more enters
    waiting = [asyncio.create_task(admission.enter("flood")) for _ in range(5)]
    await asyncio.sleep(0)
    for expected_active in (5, 4, 3, 2):
        admission.leave("flood")
        await asyncio.sleep(0)
        assert admission._lines["flood"].active == expected_active
        assert not any(t.done() for t in waiting)
    admission.leave("flood")  # under the bound (1 < 2): the next in line enters
    await asyncio.sleep(0)
    assert admission._lines["flood"].active == 2 and sum(t.done() for t in waiting) == 1
    admission.leave("quiet")
    admission.leave("quiet")
    # the quiet tenant has not arrived for a window: the bound grows back, and one leave
    # admits as many as fit
    clock.now += 1.5
    assert admission.bound("flood") == 6
    admission.leave("flood")
    await asyncio.sleep(0)
    assert all(t.done() for t in waiting) and admission._lines["flood"].active == 5
    for _ in range(5):
        admission.leave("flood")
    assert admission._lines == {}


async def test_a_quiet_tenant_keeps_the_flood_at_the_smaller_bound_while_it_keeps_arriving() -> None:
    clock = _Clock()
    admission = Admission(per_tenant=64, max_waiting=1000, contended=8, clock=clock)
    assert admission.try_enter("quiet")
    admission.leave("quiet")
    for i in range(3):  # the quiet tenant arrives every 0.5 s: the flood holds 8 at most
        clock.now += 0.5
        entered = sum(admission.try_enter("flood") for _ in range(100))
        assert entered == (8 if i == 0 else 0)
        assert admission.try_enter("quiet")  # and the quiet tenant enters at once
        admission.leave("quiet")
    clock.now += 1.5  # quiet for a window: the flood gets its large bound back
    assert sum(admission.try_enter("flood") for _ in range(100)) == 56
    assert admission._lines["flood"].active == 64


async def test_a_parked_request_keeps_its_slot_while_another_tenant_is_active() -> None:
    clock = _Clock()
    admission = Admission(per_tenant=4, max_waiting=100, contended=2, clock=clock)
    assert admission.try_enter("flood")
    alone = Slot(admission, "flood")
    alone.park()  # alone: given back as it parks
    assert "flood" not in admission._lines
    alone.release()  # and not twice
    assert "flood" not in admission._lines
    assert admission.try_enter("quiet")
    admission.leave("quiet")
    assert admission.try_enter("flood")
    contended = Slot(admission, "flood")
    contended.park()  # another tenant arrived within the window: kept until the end
    assert admission._lines["flood"].active == 1
    contended.release()
    assert admission._lines == {}


def _boards(count: int) -> list[Board]:
    """``count`` processes' views of one board (a bytearray stands for the shared page)."""
    page = bytearray(Board.SLOT.size * count)
    return [Board(page, i) for i in range(count)]


async def test_workers_share_who_is_active_and_split_the_contended_bound() -> None:
    clock = _Clock()
    first, second = (Admission(per_tenant=64, max_waiting=1000, contended=8, clock=clock, board=b)
                     for b in _boards(2))
    # the flood alone, in both processes: the large bound in each
    assert sum(first.try_enter("flood") for _ in range(100)) == 64
    assert sum(second.try_enter("flood") for _ in range(100)) == 64
    for _ in range(64):
        first.leave("flood")
        second.leave("flood")
    clock.now += Board.REFRESH_S  # past the read cache
    # the quiet tenant reaches the first process only: the second, which never saw it,
    # holds the flood to its share too (8 over 2 processes: 4 each)
    assert first.try_enter("quiet")
    first.leave("quiet")
    clock.now += Board.REFRESH_S
    assert second.bound("flood") == 4 and second.contended("flood")
    assert sum(second.try_enter("flood") for _ in range(100)) == 4
    assert sum(first.try_enter("flood") for _ in range(100)) == 4
    assert second.bound("quiet") == 4  # the quiet tenant is contended in the second too
    # a window without the quiet tenant anywhere: the large bound again, in both
    clock.now += 1.5
    assert second.bound("flood") == 64 and first.bound("flood") == 64
    assert not second.contended("flood")


async def test_a_tenant_active_in_two_workers_alone_is_not_contended_by_itself() -> None:
    clock = _Clock()
    first, second = (Admission(per_tenant=64, max_waiting=1000, contended=8, clock=clock, board=b)
                     for b in _boards(2))
    for _ in range(3):
        clock.now += 0.3
        assert first.try_enter("flood") and second.try_enter("flood")
        first.leave("flood")
        second.leave("flood")
    assert first.bound("flood") == 64 and second.bound("flood") == 64


async def test_the_share_is_rounded_up_and_at_least_one() -> None:
    assert Admission(64, 100, contended=8, board=_boards(3)[0])._contended == 3
    assert Admission(64, 100, contended=8, board=_boards(16)[0])._contended == 1
    assert Admission(64, 100, contended=8, board=_boards(1)[0])._contended == 8
    assert Admission(64, 100, contended=8)._contended == 8  # no board: the whole bound


_CHILD = """
import sys
from dropgate.http.admission import Board
board = Board.attach(int(sys.argv[1]), 1)
board.write("quiet", float(sys.argv[2]), -1e18, float(sys.argv[2]))
"""


def test_the_board_is_shared_with_another_process() -> None:
    """The first process's board, attached by a real worker process through its fd: what
    the worker writes, the first process reads (the clock is the test's, not the wall's)."""
    board = Board.create(2)
    assert board.fd is not None
    subprocess.run([sys.executable, "-c", _CHILD, str(board.fd), "1000.0"], check=True,
                   pass_fds=(board.fd,), timeout=60)
    admission = Admission(per_tenant=64, max_waiting=100, contended=8, clock=lambda: 1000.5, board=board)
    assert admission.bound("flood") == 4  # the quiet tenant arrived in the worker half a second ago
    assert admission.try_enter("quiet") and admission.bound("quiet") == 64  # only itself, anywhere
