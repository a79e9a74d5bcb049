"""Key schema: stable partitions, hash tags, ids validated before they reach a key."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dropgate.engine.keys import Keys, partition_of
from dropgate.errors import Conflict, ValidationError
from dropgate.runtime import open_runtime
from dropgate.settings import Settings


def test_partition_is_stable_and_tagged() -> None:
    keys = Keys("dg", 16)
    assert partition_of("acme", 16) == partition_of("acme", 16) == 14  # crc32, not salted hash()
    tk = keys.tenant("acme")
    assert tk.log == "dg:{p14}:log"
    assert tk.tenant() == "dg:{p14}:tenant:acme"
    assert tk.invite("X").startswith("dg:{p14}:")
    assert tk.invite_users("X").startswith("dg:{p14}:")
    assert {partition_of(f"t{i}", 16) for i in range(200)} == set(range(16))


@pytest.mark.parametrize("bad", ["", "a:b", "{p1}", "a}", "x" * 65, "sp ace", "ü", "a\nb", "abc\n"])
def test_bad_ids_never_reach_a_key(bad: str) -> None:
    keys = Keys("dg", 16)
    with pytest.raises(ValidationError):
        keys.tenant(bad)
    with pytest.raises(ValidationError):
        keys.tenant("ok").invite(bad)


async def test_partition_count_cannot_change(make_settings: Callable[..., Settings], isolated: str) -> None:
    async with open_runtime(make_settings(partitions=4), run_persister=False):
        pass
    with pytest.raises(Conflict):
        async with open_runtime(make_settings(partitions=8), run_persister=False):
            pass
