"""Structs, Lua tables and applier SQL derived from an entity's spec: an offer's fields
are named in its spec, and the state struct, the event, the scripts follow it."""

from __future__ import annotations

import msgspec
import pytest

from dropgate.engine.events import InviteSaved, OfferSaved, PromoSaved
from dropgate.engine.offers import OfferState
from dropgate.engine.scripts import sources
from dropgate.errors import ValidationError
from dropgate.runtime import Runtime
from dropgate.specs.entities import INVITE, OFFER, PROMO
from dropgate.specs.structs import lua_table, script_pairs

_OFFER = dict(event_id="e", name="O", price_minor=100, currency="usd", total=10, max_per_order=3,
              expires_at_ms=None, active=True)


def test_state_and_event_structs_have_the_specs_fields() -> None:
    assert set(OfferState.__struct_fields__) == {f.name for f in OFFER.fields}
    saved = {f.name for f in OFFER.saved()}
    assert set(OfferSaved.__struct_fields__) == saved
    assert {"reserved", "sold", "version"}.isdisjoint(saved)  # counters and the event's own v
    optional = {f.name for f in msgspec.structs.fields(OfferSaved) if f.default is None}
    assert optional == {"expires_at_ms", "max_per_user", "success_url", "cancel_url"}


def test_invite_saved_is_the_invite_specs_saved_fields() -> None:
    assert set(InviteSaved.__struct_fields__) == {"tenant_id", "code", "max_uses", "active", "expires_at_ms",
                                                  "created_ms"} == {f.name for f in INVITE.saved()}
    for name in ("invite_create", "invite_update", "resync_invite"):
        assert lua_table(INVITE) in sources()[name].text, name


def test_promo_saved_is_the_promo_specs_saved_fields() -> None:
    assert set(PromoSaved.__struct_fields__) == {f.name for f in PROMO.saved()}
    assert {"times_used", "total_bonus_issued", "version"}.isdisjoint(PromoSaved.__struct_fields__)
    optional = {f.name for f in msgspec.structs.fields(PromoSaved) if f.default is None}
    assert optional == {"amount", "percent", "max_uses", "starts_at_ms", "ends_at_ms"}
    for name in ("promo_create", "promo_update", "resync_promo"):
        assert lua_table(PROMO) in sources()[name].text, name


def test_scripts_get_the_spec_as_a_lua_table() -> None:
    table = lua_table(OFFER)
    assert "{'max_per_order', 'int', false}" in table and "{'expires_at_ms', 'ms', true}" in table
    for name in ("offer_create", "offer_update", "resync_offer"):
        assert table in sources()[name].text, name
        assert "@spec" not in sources()[name].text, name


def test_script_pairs_refuse_an_unknown_field() -> None:
    assert script_pairs(OFFER, {"active": False, "expires_at_ms": None}) == ["active", "0", "expires_at_ms", ""]
    with pytest.raises(TypeError, match="colour"):
        script_pairs(OFFER, {"colour": "red"})


@pytest.mark.parametrize("change", [
    {"max_per_order": None},          # a required field left out
    {"sold": 5},                      # a counter the script owns
    {"total": "many"},                # not a number
])
async def test_create_refuses_bad_fields_before_writing(runtime: Runtime, change: dict[str, object]) -> None:
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    fields = {k: v for k, v in {**_OFFER, **change}.items() if v is not None or k == "expires_at_ms"}
    with pytest.raises(ValidationError):
        await runtime.offers.create("t1", offer_id="o1", **fields)
    created = await runtime.offers.create("t1", offer_id="o1", **_OFFER)  # nothing was written
    assert msgspec.structs.asdict(created)["max_per_order"] == 3 and created.version == 1
