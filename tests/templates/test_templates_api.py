"""The templates API over a real socket: the store's CRUD with clear refusals, the sync from
the fake WABA (two pages: exact path, query and Bearer header), a thread's service window,
operators' free-form messages refused outside it, and templates sent into a thread."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from chatbridge.store import tables as t
from chatbridge.testing.fake_wa_templates import state
from tests.e2e.harness import wait_until
from tests.templates.rig import WABA, Rig, template_rig

LOCAL = {
    "name": "back_in_stock",
    "language": "en",
    "category": "marketing",
    "components": [
        {"type": "body", "text": "Hi {{first_name}}, {{product}} is back."},
        {"type": "footer", "text": "Reply STOP to opt out"},
    ],
}


async def counts(rig: Rig) -> dict[str, int]:
    out = {}
    async with rig.bridge.store.engine.connect() as conn:
        for table in (t.templates, t.messages, t.deliveries):
            query = select(func.count()).select_from(table)
            out[table.name] = (await conn.execute(query)).scalar_one()
    return out


async def test_local_template_crud_and_refusals(database_url: str) -> None:
    async with template_rig(database_url, sync=False) as rig:
        r = await rig.http.post("/api/comms/templates", json=LOCAL)
        assert r.status_code == 201, r.text
        created = r.json()["template"]
        assert created["components"][0]["type"] == "BODY"
        assert [s["key"] for s in created["slots"]] == ["first_name", "product"]
        assert (created["source"], created["status"], created["editable"]) == (
            "local",
            "local",
            True,
        )
        tid = created["id"]

        before = await counts(rig)
        bad: list[tuple[dict[str, Any], int, str]] = [
            ({**LOCAL}, 409, "exists already"),
            ({**LOCAL, "name": "Bad Name"}, 422, "name"),
            ({**LOCAL, "name": "x2", "components": []}, 422, "non-empty"),
            ({**LOCAL, "name": "x3", "components": [{"type": "footer", "text": "f"}]}, 422, "BODY"),
            (
                {**LOCAL, "name": "x4", "components": [{"type": "body", "text": "{{1}} {{name}}"}]},
                422,
                "all positional",
            ),
            ({**LOCAL, "name": "x5", "components": [{"type": "gallery"}]}, 422, "type must be"),
        ]
        for body, status, words in bad:
            r = await rig.http.post("/api/comms/templates", json=body)
            assert r.status_code == status, (body, r.text)
            assert words in r.text
        assert await counts(rig) == before

        r = await rig.http.patch(
            f"/api/comms/templates/{tid}",
            json={"components": [{"type": "BODY", "text": "Hello {{first_name}}"}]},
        )
        assert r.status_code == 200, r.text
        assert [s["key"] for s in r.json()["template"]["slots"]] == ["first_name"]
        listed = (await rig.http.get("/api/comms/templates", params={"q": "stock"})).json()
        assert [x["id"] for x in listed["templates"]] == [tid] and listed["total"] == 1
        assert (await rig.http.delete(f"/api/comms/templates/{tid}")).status_code == 204
        assert (await rig.http.get(f"/api/comms/templates/{tid}")).status_code == 404


async def test_sync_reads_every_page_with_the_bearer_token(database_url: str) -> None:
    async with template_rig(database_url, sync=False) as rig:
        # a local template of the same name and language becomes Meta's
        r = await rig.http.post(
            "/api/comms/templates",
            json={
                "name": "booking",
                "language": "en_US",
                "components": [{"type": "BODY", "text": "x"}],
            },
        )
        assert r.status_code == 201
        from chatbridge.channels.whatsapp import templates as tpl

        tpl_page, tpl.SYNC_PAGE = tpl.SYNC_PAGE, 1  # two templates: two pages
        try:
            r = await rig.http.post("/api/comms/templates/sync")
        finally:
            tpl.SYNC_PAGE = tpl_page
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("fetched", "added", "updated")} == {
            "fetched": 2,
            "added": 1,
            "updated": 1,
        }
        calls = rig.fake.calls(f"/v23.0/{WABA}/message_templates")
        assert len(calls) == 2
        assert all(c.method == "GET" for c in calls)
        assert all(c.headers["authorization"] == "Bearer meta-token" for c in calls)
        queries = state(rig.fake)["list_queries"]
        fields = "fields=name,language,status,category,components,id"
        assert queries == [f"{fields}&limit=1", f"{fields}&limit=1&after=1"]
        listed = (await rig.http.get("/api/comms/templates", params={"source": "meta"})).json()
        by_name = {x["name"]: x for x in listed["templates"]}
        assert set(by_name) == {"booking", "order_update"}
        assert by_name["booking"]["status"] == "approved" and not by_name["booking"]["editable"]
        assert [s["key"] for s in by_name["order_update"]["slots"]] == ["header.1", "1", "2"]
        r = await rig.http.patch(
            f"/api/comms/templates/{by_name['booking']['id']}", json={"category": "marketing"}
        )
        assert r.status_code == 409 and "synced from Meta" in r.text

        rig.fake.meta_token = "rotated"
        r = await rig.http.post("/api/comms/templates/sync")
        assert r.status_code == 502 and "refused the access token" in r.json()["error"]["message"]
        assert len((await rig.http.get("/api/comms/templates")).json()["templates"]) == 2


async def test_window_operator_message_and_thread_template(database_url: str) -> None:
    async with template_rig(database_url) as rig:
        thread = await rig.customer_writes("hi there", wamid="wamid.in-1")
        await wait_until(lambda: rig.text_sends(), 10)
        detail = (await rig.http.get(f"/api/comms/threads/{thread}")).json()["thread"]
        window = detail["service_window"]
        assert window["open"] is True and window["closes_at"] > window["last_inbound_at"]

        r = await rig.http.post(f"/api/comms/threads/{thread}/messages", json={"text": "inside"})
        assert r.status_code == 201, r.text
        await wait_until(lambda: len(rig.text_sends()) == 2, 10)

        await rig.age_inbound(thread)
        detail = (await rig.http.get(f"/api/comms/threads/{thread}")).json()["thread"]
        assert detail["service_window"]["open"] is False
        before = await counts(rig)
        r = await rig.http.post(f"/api/comms/threads/{thread}/messages", json={"text": "late"})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "outside_service_window" and "template" in error["message"]
        assert await counts(rig) == before

        # a template with a slot missing is refused before anything is queued or sent
        sent_before = len(rig.fake.requests)
        r = await rig.http.post(
            f"/api/comms/threads/{thread}/template",
            json={"name": "order_update", "parameters": {"1": "Asha", "2": "Friday"}},
        )
        assert r.status_code == 422, r.text
        assert "missing parameter(s) header.1" in r.json()["error"]["message"]
        assert await counts(rig) == before and len(rig.fake.requests) == sent_before

        params = {"header.1": "A-17", "1": "Asha", "2": "Friday"}
        r = await rig.http.post(
            f"/api/comms/threads/{thread}/template",
            json={"name": "order_update", "parameters": params},
        )
        assert r.status_code == 201, r.text
        assert r.json()["text"] == "*Order A-17*\n\nHi Asha, your order ships on Friday."
        await wait_until(lambda: rig.template_sends(), 10)
        assert rig.template_sends() == [
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+919876543210",
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "Asha"},
                                {"type": "text", "text": "Friday"},
                            ],
                        },
                    ],
                },
            }
        ]
        messages = (await rig.http.get(f"/api/comms/threads/{thread}/messages")).json()["messages"]
        assert messages[-1]["text"].startswith("*Order A-17*")


async def test_defaults_come_from_the_contact_and_linked_person(database_url: str) -> None:
    async with template_rig(database_url) as rig:
        thread = await rig.customer_writes("hello", wamid="wamid.in-2")
        r = await rig.http.post(
            "/api/comms/people",
            json={"name": "Asha Rao", "phone": "+919876543210", "company": "Lucky Shrub"},
        )
        assert r.status_code == 201, r.text
        listed = (await rig.http.get("/api/comms/templates")).json()["templates"]
        booking = next(x for x in listed if x["name"] == "booking")
        order = next(x for x in listed if x["name"] == "order_update")
        r = await rig.http.get(f"/api/comms/threads/{thread}/templates/{booking['id']}/defaults")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["parameters"] == {"first_name": "Asha", "company": "Lucky Shrub"}
        assert [s["from"] for s in body["slots"]] == ["person", "person"]
        r = await rig.http.get(f"/api/comms/threads/{thread}/templates/{order['id']}/defaults")
        assert r.json()["parameters"] == {}
        r = await rig.http.get(f"/api/comms/threads/{thread}/templates/nope/defaults")
        assert r.status_code == 404
