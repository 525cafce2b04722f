"""The broadcast store on SQLite and PostgreSQL: the snapshot in one transaction (skipped with
reasons), one lease at a time, the fenced ``sending`` bracket, pause / cancel, and status
webhooks that only move a recipient forward."""

from __future__ import annotations

from sqlalchemy import func, select, update

from chatbridge.store import Store
from chatbridge.store import tables as t
from tests.broadcasts.rig import add_people, add_template, create, waha_settings

SETTINGS = waha_settings("http://127.0.0.1:9")


async def states(store: Store, broadcast_id: str) -> dict[str, str]:
    rows, _ = await store.list_recipients(broadcast_id, limit=200)
    return {r.person_id: r.state for r in rows}


async def test_create_snapshots_recipients_with_skips(store: Store) -> None:
    ids = await add_people(store, 5, tags=["vip"], opted_out={1})
    await add_people(store, 2, tags=["other"], start=10)
    async with store._tx() as conn:  # a VIP without a phone
        await conn.execute(update(t.people).where(t.people.c.id == ids[3]).values(phone=None))
    template_id = await add_template(store)
    record = await create(store, SETTINGS, template_id, segment={"tags_any": ["vip"]})
    assert record.total == 5 and record.state == "queued"
    assert record.counts == {"queued": 3, "skipped": 2}
    rows, total = await store.list_recipients(record.id, limit=10)
    assert total == 5 and [r.seq for r in rows] == [1, 2, 3, 4, 5]
    by_person = {r.person_id: r for r in rows}
    assert by_person[ids[1]].reason == "opted_out"
    assert by_person[ids[3]].reason == "no_whatsapp_phone"
    assert by_person[ids[0]].address == "waha:default:15550000000@c.us"
    body = record.body()
    assert body["progress"] == 0.4 and body["counts"]["skipped"] == 2

    # later changes to people do not change who gets it
    await add_people(store, 1, tags=["vip"], start=20)
    again = await store.get_broadcast(record.id)
    assert again is not None and again.total == 5


async def test_one_lease_at_a_time_and_taken_over_when_it_runs_out(store: Store) -> None:
    await add_people(store, 3)
    record = await create(store, SETTINGS, await add_template(store))
    first = await store.claim_broadcast("a", lease_seconds=30)
    assert first is not None and first.id == record.id and first.state == "running"
    assert await store.claim_broadcast("b", lease_seconds=30) is None
    async with store._tx() as conn:  # a's lease runs out
        await conn.execute(update(t.broadcasts).values(lease_expires_at=0))
    taken = await store.claim_broadcast("b", lease_seconds=30)
    assert taken is not None and taken.id == record.id
    # a lost it: its next send is refused, its renewal too
    [r1, *_] = await store.next_recipients(record.id, 10)
    assert not await store.start_send(record.id, r1.person_id, "a")
    assert not await store.renew_broadcast(record.id, "a", 30)
    assert await store.start_send(record.id, r1.person_id, "b")
    assert not await store.start_send(record.id, r1.person_id, "b")  # already sending


async def test_sending_bracket_cut_off_and_finish(store: Store) -> None:
    ids = await add_people(store, 3)
    record = await create(store, SETTINGS, await add_template(store))
    assert await store.claim_broadcast("w", lease_seconds=30) is not None
    assert await store.start_send(record.id, ids[0], "w")
    assert await store.end_send(record.id, ids[0], state="sent", external_id="true_x_1")
    assert not await store.end_send(record.id, ids[0], state="failed")  # only a sending row
    assert await store.start_send(record.id, ids[1], "w")  # ... and the worker dies here
    assert [r.person_id for r in await store.cut_off_sends(record.id)] == [ids[1]]
    assert not await store.finish_broadcast(record.id, "w")  # one queued, one sending
    await store.end_send(record.id, ids[1], state="uncertain", reason="cut off")
    assert await store.start_send(record.id, ids[2], "w")
    await store.end_send(record.id, ids[2], state="failed", reason="refused")
    assert await store.finish_broadcast(record.id, "w")
    done = await store.get_broadcast(record.id)
    assert done is not None and done.state == "done" and done.finished_at is not None
    assert done.counts == {"sent": 1, "uncertain": 1, "failed": 1}
    assert await store.retry_uncertain(record.id) == 1
    reopened = await store.get_broadcast(record.id)
    assert reopened is not None and reopened.state == "queued"


async def test_pause_resume_cancel(store: Store) -> None:
    ids = await add_people(store, 3)
    record = await create(store, SETTINGS, await add_template(store))
    assert await store.claim_broadcast("w", lease_seconds=30) is not None
    paused = await store.change_broadcast(record.id, "pause")
    assert not isinstance(paused, str) and paused.state == "paused"
    assert not await store.start_send(record.id, ids[0], "w")  # the worker stops
    assert await store.claim_broadcast("w", lease_seconds=30) is None
    assert await store.change_broadcast(record.id, "pause") == "conflict:paused"
    resumed = await store.change_broadcast(record.id, "resume")
    assert not isinstance(resumed, str) and resumed.state == "queued"
    cancelled = await store.change_broadcast(record.id, "cancel")
    assert not isinstance(cancelled, str) and cancelled.state == "cancelled"
    assert cancelled.counts == {"skipped": 3}
    assert await store.change_broadcast(record.id, "resume") == "conflict:cancelled"
    assert await store.change_broadcast("bc_nope", "cancel") == "missing"


async def test_status_moves_forward_only(store: Store) -> None:
    ids = await add_people(store, 2)
    record = await create(store, SETTINGS, await add_template(store))
    await store.claim_broadcast("w", lease_seconds=30)
    for i, pid in enumerate(ids):
        await store.start_send(record.id, pid, "w")
        await store.end_send(record.id, pid, state="sent", external_id=f"ext-{i}")
    assert await store.apply_broadcast_status(["ext-0"], "read") == 1
    assert await store.apply_broadcast_status(["ext-0"], "delivered") == 1  # late: ignored
    assert await store.apply_broadcast_status(["nope", "ext-1"], "failed", "131026") == 1
    assert await store.apply_broadcast_status(["unknown"], "read") == 0
    got = await states(store, record.id)
    assert got == {ids[0]: "read", ids[1]: "failed"}
    rows, _ = await store.list_recipients(record.id, state="failed")
    assert [r.reason for r in rows] == ["131026"]


async def test_people_tags_and_opt_out_filters(store: Store) -> None:
    await add_people(store, 3, tags=["vip", "beta"], opted_out={0})
    await add_people(store, 2, tags=["vip_x"], start=5)
    vip, total = await store.list_people(q=None, limit=50, offset=0, tag="vip")
    assert total == 3 and all("vip" in p["tags"] for p in vip)
    out, total = await store.list_people(q=None, limit=50, offset=0, opted_out=True)
    assert total == 1 and out[0]["opted_out_at"] is not None
    async with store._tx() as conn:
        n = (await conn.execute(select(func.count()).select_from(t.people))).scalar_one()
    assert n == 5


async def test_deleting_a_recipient_person_keeps_the_counts_adding_up(store: Store) -> None:
    ids = await add_people(store, 3)
    record = await create(store, SETTINGS, await add_template(store))
    assert await store.delete_person(ids[1])
    after = await store.get_broadcast(record.id)
    assert after is not None and after.total == 2 and after.counts == {"queued": 2}


async def test_a_broadcast_that_cannot_go_on_fails_with_the_reason(store: Store) -> None:
    await add_people(store, 2)
    record = await create(store, SETTINGS, await add_template(store))
    assert not await store.fail_broadcast(record.id, "w", "nope")  # not leased by w
    await store.claim_broadcast("w", lease_seconds=30)
    assert await store.fail_broadcast(record.id, "w", "template tp_x is gone")
    failed = await store.get_broadcast(record.id)
    assert failed is not None and failed.state == "failed"
    assert failed.last_error == "template tp_x is gone" and failed.counts == {"skipped": 2}
    assert await store.claim_broadcast("w", lease_seconds=30) is None
