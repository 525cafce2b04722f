"""The broadcasts API over a real socket, the bridge's own worker sending to the fake WAHA:
preview, create (201), progress, recipients, pause / resume / cancel, clear 4xx for bad
input with nothing written, WAHA ``message.ack`` webhooks moving recipients forward, and the
people API's tags and opt-out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from chatbridge.api import create_app
from chatbridge.config import Settings
from chatbridge.pipeline.bridge import Bridge
from chatbridge.store import tables as t
from chatbridge.testing.fake_whatsapp import FakeWhatsApp, create_fake_whatsapp
from chatbridge.testing.servers import serve_app
from tests.broadcasts.rig import add_template, waha_settings
from tests.e2e.harness import FAST, wait_until

ADMIN = "test-admin-key-0123"


@dataclass
class Rig:
    bridge: Bridge
    fake: FakeWhatsApp
    http: httpx.AsyncClient

    async def broadcast(self, broadcast_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/comms/broadcasts/{broadcast_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()["broadcast"]
        return body

    async def rows(self, table: Any) -> int:
        async with self.bridge.store.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@asynccontextmanager
async def rig(database_url: str) -> AsyncIterator[Rig]:
    fake_app = create_fake_whatsapp()
    async with serve_app(fake_app) as fake_url:
        settings = Settings(database_url=database_url, instance_id="bc", admin_key=ADMIN, **FAST)
        app = create_app(settings)
        async with serve_app(app) as url:
            bridge: Bridge = app.state.bridge
            bridge.set_comms_settings(waha_settings(fake_url, broadcast_rate=100))
            async with httpx.AsyncClient(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}
            ) as http:
                yield Rig(bridge, fake_app.state.fake, http)


async def people(r: Rig) -> list[str]:
    ids = []
    for i, (tags, opted_out) in enumerate(
        [(["VIP", "beta"], False), (["vip"], False), (["vip"], True), (["lead"], False)]
    ):
        res = await r.http.post(
            "/api/comms/people",
            json={
                "name": f"Asha {i}",
                "phone": f"+1 555 010 {1000 + i}",
                "tags": tags,
                "opted_out": opted_out,
            },
        )
        assert res.status_code == 201, res.text
        ids.append(res.json()["person"]["id"])
    return ids


async def test_create_send_progress_and_status_webhooks(database_url: str) -> None:
    async with rig(database_url) as r:
        ids = await people(r)
        got = (await r.http.get("/api/comms/people", params={"tag": "vip"})).json()
        assert got["total"] == 3 and got["people"][0]["tags"] == ["vip", "beta"]
        got = (await r.http.get("/api/comms/people", params={"opted_out": "true"})).json()
        assert [p["id"] for p in got["people"]] == [ids[2]]
        template_id = await add_template(r.bridge.store)
        draft = {
            "template_id": template_id,
            "parameters": {"1": "{person.first_name}", "2": "The red kettle"},
            "segment": {"tags_any": ["vip"]},
        }
        preview = await r.http.post("/api/comms/broadcasts/preview", json=draft)
        assert preview.status_code == 200, preview.text
        assert preview.json()["sendable"] == 2
        assert preview.json()["skipped_reasons"] == {"opted_out": 1}
        assert await r.rows(t.broadcasts) == 0

        created = await r.http.post("/api/comms/broadcasts", json={**draft, "name": "Kettles"})
        assert created.status_code == 201, created.text
        b = created.json()["broadcast"]
        assert b["rate_per_second"] == 100 and b["total"] == 3

        async def done() -> dict[str, Any] | None:
            body = await r.broadcast(b["id"])
            return body if body["state"] == "done" else None

        final = await wait_until(done, 15)
        assert final["counts"]["sent"] == 2 and final["counts"]["skipped"] == 1
        assert final["progress"] == 1.0
        sent = [c.json for c in r.fake.calls("/api/sendText")]
        assert sorted(s["chatId"] for s in sent) == ["15550101000@c.us", "15550101001@c.us"]
        assert sent[0]["text"] == "Hi Asha, The red kettle is back in stock."

        listed = (await r.http.get("/api/comms/broadcasts")).json()
        assert [x["id"] for x in listed["broadcasts"]] == [b["id"]]
        recips = await r.http.get(
            f"/api/comms/broadcasts/{b['id']}/recipients", params={"state": "sent"}
        )
        first = recips.json()["recipients"][0]
        assert recips.json()["total"] == 2 and first["name"] == "Asha 0"

        # WAHA reports the message read: the recipient moves to read
        ack = {
            "event": "message.ack",
            "session": "default",
            "payload": {
                "id": first["external_id"],
                "from": "15550101000@c.us",
                "fromMe": True,
                "ack": 3,
                "ackName": "READ",
            },
        }
        hook = await r.http.post(
            "/api/comms/webhooks/waha",
            content=json.dumps(ack).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert hook.status_code == 200, hook.text

        async def read() -> bool:
            return (await r.broadcast(b["id"]))["counts"]["read"] == 1

        await wait_until(read, 10)


async def test_bad_input_is_refused_with_the_reason_and_nothing_written(
    database_url: str,
) -> None:
    async with rig(database_url) as r:
        await people(r)
        template_id = await add_template(r.bridge.store)
        ok = {"template_id": template_id, "parameters": {"1": "a", "2": "b"}, "name": "x"}
        cases = [
            ({**ok, "template_id": "tp_nope"}, "unknown_template"),
            ({**ok, "parameters": {"1": "a"}}, "invalid_parameters"),
            ({**ok, "segment": {"tags_any": ["nobody"]}}, "empty_segment"),
            ({**ok, "segment": {"tag": "vip"}}, "invalid_segment"),
            ({**ok, "rate_per_second": 0}, "invalid_rate"),
            ({**ok, "rate_per_second": -3}, "invalid_rate"),
            ({**ok, "parameters": {"1": "{person.secret}", "2": "b"}}, "invalid_segment"),
        ]
        for body, code in cases:
            res = await r.http.post("/api/comms/broadcasts", json=body)
            assert res.status_code == 422, (code, res.text)
            assert res.json()["error"]["code"] == code, res.text
        missing = await r.http.post("/api/comms/broadcasts", json={**ok, "parameters": {"1": "a"}})
        assert "missing parameter(s) 2" in missing.text
        assert await r.rows(t.broadcasts) == 0 and await r.rows(t.broadcast_recipients) == 0
        assert (await r.http.get("/api/comms/broadcasts/bc_nope")).status_code == 404
        bad_tag = await r.http.post("/api/comms/people", json={"name": "x", "tags": [" "]})
        assert bad_tag.status_code == 422


async def test_pause_resume_cancel_over_the_api(database_url: str) -> None:
    async with rig(database_url) as r:
        await people(r)
        r.bridge.set_comms_settings(r.bridge.comms_settings().updated({"broadcast_rate": 0.5}))
        template_id = await add_template(r.bridge.store)
        res = await r.http.post(
            "/api/comms/broadcasts",
            json={"template_id": template_id, "parameters": {"1": "a", "2": "b"}, "name": "x"},
        )
        b = res.json()["broadcast"]
        paused = await r.http.post(f"/api/comms/broadcasts/{b['id']}/pause")
        assert paused.status_code == 200 and paused.json()["broadcast"]["state"] == "paused"
        again = await r.http.post(f"/api/comms/broadcasts/{b['id']}/pause")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        resumed = await r.http.post(f"/api/comms/broadcasts/{b['id']}/resume")
        assert resumed.json()["broadcast"]["state"] == "queued"
        cancelled = await r.http.post(f"/api/comms/broadcasts/{b['id']}/cancel")
        body = cancelled.json()["broadcast"]
        assert body["state"] == "cancelled"
        assert body["counts"]["skipped"] >= 1 and body["counts"]["queued"] == 0
        bogus = await r.http.post(f"/api/comms/broadcasts/{b['id']}/explode")
        assert bogus.status_code == 422
