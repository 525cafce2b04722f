"""A broadcast on Meta's Cloud API (the fake Graph API, the WABA's templates synced): each
recipient gets a ``type: "template"`` message with their own parameters (exact path, Bearer
header and body, with ``biz_opaque_callback_data``), and Meta's ``statuses[]`` webhooks move
the recipients to delivered, read or failed; a send whose id was never recorded (cut off by a
crash) is settled by the ``biz_opaque_callback_data`` Meta echoes."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update

from chatbridge.store import tables as t
from tests.e2e.harness import wait_until
from tests.templates.rig import PHONE_NUMBER_ID, template_rig


async def test_meta_template_broadcast_and_status_webhooks(database_url: str) -> None:
    async with template_rig(database_url) as rig:
        for i, name in enumerate(["Asha Rao", "Ravi Kumar", "Mina Shah"]):
            r = await rig.http.post(
                "/api/comms/people",
                json={"name": name, "phone": f"+91 98765 4321{i}", "tags": ["vip"]},
            )
            assert r.status_code == 201, r.text
        templates = (await rig.http.get("/api/comms/templates")).json()["templates"]
        [order] = [t for t in templates if t["name"] == "order_update"]
        r = await rig.http.post(
            "/api/comms/broadcasts",
            json={
                "name": "Orders",
                "template_id": order["id"],
                "parameters": {"header.1": "A-17", "1": "{person.first_name}", "2": "Friday"},
                "segment": {"tags_all": ["vip"]},
            },
        )
        assert r.status_code == 201, r.text
        b = r.json()["broadcast"]
        assert b["rate_per_second"] == 80  # Meta's default throughput

        async def done() -> dict[str, Any] | None:
            body = (await rig.http.get(f"/api/comms/broadcasts/{b['id']}")).json()["broadcast"]
            return body if body["state"] == "done" else None

        final = await wait_until(done, 15)
        assert final["counts"]["sent"] == 3
        calls = [
            c
            for c in rig.fake.calls(f"/v23.0/{PHONE_NUMBER_ID}/messages")
            if isinstance(c.json, dict) and c.json.get("type") == "template"
        ]
        assert len(calls) == 3
        assert calls[0].headers["authorization"] == "Bearer meta-token"
        recipients = (await rig.http.get(f"/api/comms/broadcasts/{b['id']}/recipients")).json()[
            "recipients"
        ]
        first_person = recipients[0]["person_id"]
        assert calls[0].json == {
            "biz_opaque_callback_data": f"bc:{b['id']}:{first_person}",
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
        }, calls[0].json
        assert [c.json["to"] for c in calls] == ["+919876543210", "+919876543211", "+919876543212"]

        sent = rig.fake.meta_sent
        for wamid_sent, status in zip(sent[:2], ["read", "failed"], strict=True):
            hook = await rig.http.post(
                "/api/comms/webhooks/meta",
                content=json.dumps(rig.fake.meta_status_of(wamid_sent, status)).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert hook.status_code == 200, hook.text

        async def moved() -> dict[str, int] | None:
            body = (await rig.http.get(f"/api/comms/broadcasts/{b['id']}")).json()["broadcast"]
            counts: dict[str, int] = body["counts"]
            return counts if counts["read"] == 1 and counts["failed"] == 1 else None

        counts = await wait_until(moved, 10)
        assert counts["sent"] == 1

        # the third send as if a crash had cut it off: uncertain, its wamid never recorded;
        # Meta's status echoes biz_opaque_callback_data, which settles it
        third = recipients[2]["person_id"]
        async with rig.bridge.store._tx() as conn:
            await conn.execute(
                update(t.broadcast_recipients)
                .where(t.broadcast_recipients.c.person_id == third)
                .values(state="uncertain", external_id=None, sent_at=None)
            )
        hook = await rig.http.post(
            "/api/comms/webhooks/meta",
            content=json.dumps(rig.fake.meta_status_of(sent[2], "delivered")).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert hook.status_code == 200, hook.text
        rows = (await rig.http.get(f"/api/comms/broadcasts/{b['id']}/recipients")).json()[
            "recipients"
        ]
        assert (rows[2]["state"], rows[2]["external_id"]) == ("delivered", sent[2].wamid)
