"""A local OpenAI-compatible transcription server (``POST /v1/audio/transcriptions``) that
also serves recordings by URL (``GET /recordings/{name}``), with fault injection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

AUDIO = b"RIFF fake audio \x00\x01\x02"


@dataclass
class FakeTranscriber:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with a 503 first
    status: int = 200  # answer with this status (after fail_next)


def create_fake_transcriber() -> FastAPI:
    app = FastAPI()
    fake = FakeTranscriber()
    app.state.fake = fake

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        async with request.form() as form:
            upload = form.get("file")
            data = await upload.read() if not isinstance(upload, str | None) else b""
            fake.requests.append(
                {
                    "auth": request.headers.get("authorization"),
                    "model": form.get("model"),
                    "filename": getattr(upload, "filename", None),
                    "size": len(data),
                }
            )
        if fake.fail_next:
            fake.fail_next -= 1
            return JSONResponse({"error": {"message": "busy"}}, status_code=503)
        if fake.status != 200:
            return JSONResponse({"error": {"message": "bad file"}}, status_code=fake.status)
        return JSONResponse({"text": f" hello from a {len(data)}-byte call "})

    @app.get("/recordings/{name}")
    async def recording(name: str) -> Response:
        if name == "missing.mp3":
            return Response(status_code=404)
        return Response(AUDIO, media_type="audio/mpeg")

    return app
