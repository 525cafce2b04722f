"""The reference point: a no-op FastAPI webhook endpoint (parse JSON, return 200).

``python -m chatbridge.bench.baseline --port P`` serves it with uvicorn as the bridge is
served (same loop and HTTP implementation, no access log), as a process of its own. The
benchmark loads it with the same generator and the same signed Chatwoot payloads as the
bridge, and reports the bridge's throughput as a ratio of this one.
"""

from __future__ import annotations

import argparse

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatbridge.bench.scenarios.chatwoot import ChatwootStack, webhook_templates
from chatbridge.testing.processes import free_port


def create_baseline_app() -> FastAPI:
    """A FastAPI app whose ``POST /webhook/chatwoot`` parses the JSON body and answers 200."""
    app = FastAPI(title="no-op webhook")

    @app.post("/webhook/chatwoot")
    async def webhook(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"status": "accepted"})

    return app


class BaselineStack(ChatwootStack):
    """The no-op endpoint, loaded with exactly the requests the ``chatwoot`` scenario sends."""

    name = "baseline"
    description = "no-op FastAPI webhook endpoint (parse JSON, return 200)"
    expects_replies = False
    needs_database = False

    async def start(self) -> None:
        port = free_port()
        child = self.spawn("baseline", ["-m", "chatbridge.bench.baseline", "--port", str(port)])
        self.bridge_url = f"http://127.0.0.1:{port}"
        await child.start()

        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                async with http.post(f"{self.bridge_url}/webhook/chatwoot", json={}) as response:
                    return response.status == 200

            await child.wait_until(answers, timeout=30, what="baseline answering")
        self.info.settings = {"command": f"python -m chatbridge.bench.baseline --port {port}"}
        self._prepare(webhook_templates(self.ctx.conversations))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="no-op FastAPI webhook endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_baseline_app(), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":  # pragma: no cover
    main()
