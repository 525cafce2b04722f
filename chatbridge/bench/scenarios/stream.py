"""The ``stream`` scenario: widget WebSockets → bridge → streaming agent → widget WebSockets.

The ``webchat`` stack with a streaming agent (``chatbridge.bench.stream_agent``): every turn
is answered with ``CHUNKS`` ``agent_streaming`` frames ``INTERVAL`` s apart, each stamped with
the time the agent handed it to its socket, then ``agent_complete``. The widgets see each
chunk as an ``agent_streaming`` frame and the joined reply as the final ``message`` frame
(what the run counts: lost, duplicated, out of order).

``measures["first_chunk_latency"]``: the agent's stamp on a turn's first chunk → that frame
read by the widget (the target: p99 ≤ 20 ms with 100 streams at a time, ``--max 100``);
``measures["chunk_latency"]`` the same for every chunk; ``measures["chunks"]`` counts chunks
missing, doubled, out of order, arriving after their final message, or not joining to it.
"""

from __future__ import annotations

from typing import Any

from chatbridge.bench.scenarios.webchat import AGENT_ID, WebchatStack, ms_triple
from chatbridge.bench.stream_agent import CHUNKS, INTERVAL


class StreamStack(WebchatStack):
    name = "stream"
    description = "widget WebSockets → bridge → streaming agent (20 chunks) → widget WebSockets"
    chunks = CHUNKS

    def agent_args(self, port: int) -> list[str]:
        args = ["-m", "chatbridge.bench.stream_agent", "--port", str(port)]
        args += ["--agent-id", AGENT_ID, "--chunks", str(CHUNKS), "--interval", str(INTERVAL)]
        if self.ctx.think_seconds > 0:
            args += ["--delay", str(self.ctx.think_seconds)]
        return args

    def record(self, stats: dict[str, Any]) -> None:
        super().record(stats)
        stream = stats["stream"]
        first = stream["first_chunk_latency"]
        self.measures["first_chunk_latency"] = first
        self.measures["chunk_latency"] = stream["chunk_latency"]
        self.measures["first_chunk_after_message"] = stream["first_chunk_after_message"]
        counts = (
            "streams", "chunks", "missing", "duplicated", "out_of_order", "late", "mismatched",
            "replies_without_chunks",
        )  # fmt: skip
        self.measures["chunks"] = {k: stream[k] for k in counts}
        # the reply is complete only after the last chunk: its latency includes the stream
        streamed = (CHUNKS - 1) * INTERVAL
        self.info.notes.append(
            f"first chunk at the widget (agent's send stamp → frame read) p50/p95/p99: "
            f"{ms_triple(first)} ms; every chunk: {ms_triple(stream['chunk_latency'])} ms; "
            f"visitor's message → first chunk: "
            f"{ms_triple(stream['first_chunk_after_message'])} ms"
        )
        self.info.notes.append(
            f"{stream['streams']:,} streams, {stream['chunks']:,} chunks; missing "
            f"{stream['missing']}, doubled {stream['duplicated']}, out of order "
            f"{stream['out_of_order']}, after the final message {stream['late']}, not joining "
            f"to the final message {stream['mismatched']}, replies without chunks "
            f"{stream['replies_without_chunks']}; end-to-end includes the agent's "
            f"{streamed * 1000:g} ms of streaming ({CHUNKS} chunks {INTERVAL * 1000:g} ms apart)"
        )
