"""``chatbridge broadcast``: create with --follow against a running bridge (its worker sends
to the fake WAHA), list, status, a refusal printed with its reason."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from chatbridge.cli import app
from tests.broadcasts.rig import add_template
from tests.broadcasts.test_broadcasts_api import ADMIN, people, rig


async def test_create_follow_list_status_and_a_refusal(sqlite_url: str) -> None:
    async with rig(sqlite_url) as r:
        await people(r)
        template_id = await add_template(r.bridge.store)
        url = str(r.http.base_url).rstrip("/")
        runner = CliRunner()
        common = ["--url", url, "--admin-key", ADMIN]

        def cli(*args: str) -> tuple[int, str]:
            result = runner.invoke(app, ["broadcast", *args, *common])
            return result.exit_code, result.output

        kettles = (
            "create",
            "--template",
            template_id,
            "--name",
            "Kettles",
            "--param",
            "1={person.first_name}",
            "--param",
            "2=Kettle",
            "--tag-any",
            "vip",
        )
        code, text = await asyncio.to_thread(cli, *kettles, "--preview")
        assert code == 0 and '2 to send, 1 skipped {"opted_out": 1}' in text, text
        code, text = await asyncio.to_thread(cli, *kettles, "--follow")
        assert code == 0, text
        assert "done: sent 2, skipped 1" in text, text
        assert len(r.fake.calls("/api/sendText")) == 2
        broadcast_id = text.split("created ", 1)[1].split(":", 1)[0]
        code, text = await asyncio.to_thread(cli, "list")
        assert code == 0 and broadcast_id in text and "100%" in text, text
        code, text = await asyncio.to_thread(cli, "status", broadcast_id)
        assert code == 0 and "done, 100% (sent 2, skipped 1)" in text, text
        code, text = await asyncio.to_thread(
            cli, "create", "--template", template_id, "--name", "x", "--param", "1=a"
        )
        assert code == 1 and "missing parameter(s) 2" in text, text
        code, text = await asyncio.to_thread(cli, "pause", broadcast_id)
        assert code == 1 and "cannot pause a broadcast that is done" in text, text
