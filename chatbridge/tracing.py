"""OpenTelemetry traces: one trace per customer message, from its webhook to the channel.

Off unless the ``tracing`` setting (``CHATBRIDGE_TRACING``) is ``otlp`` or ``console``
(applied as the app starts: ``configure_from_settings``); then it needs ``pip install
'chatbridge[tracing]'``. The exporter, the sampler and the resource read the standard
``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``,
``OTEL_SERVICE_NAME``, …).

Off, it costs nothing on the hot path: every call site tests ``tracing.ON`` (a module
attribute) and does nothing else; OpenTelemetry is not even imported. On, a customer
message's trace is::

    webhook                  the channel's request (a server span)
    ├── store.ingest         the message and its turn written (one transaction)
    └── turn                 a worker runs the turn (any replica; links to merged messages)
        ├── agent.call       the agent answers (a client span; its traceparent goes along)
        └── delivery         each outbox delivery the turn wrote, sent through its channel

The trace crosses the database: the webhook's W3C ``traceparent`` is stored in the
message's ``meta``, the turn's in each delivery's ``payload``, so the worker that claims the
turn — in this process or another replica — continues the same trace. The agent gets the
``agent.call`` span's traceparent in ``user_message.traceparent`` and, over HTTP, in a
``traceparent`` header (http-webhook requests, http-pull responses).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer


Mode = Literal["off", "console", "otlp"]

log = logging.getLogger("chatbridge.tracing")

ON = False
"""Whether spans are made. Call sites test this before anything else."""

KEY = "traceparent"
"""Where the trace context is kept: message ``meta``, delivery ``payload``, the protocol's
``user_message`` field and the HTTP header."""

_tracer: Tracer | None = None
_provider: Any = None

_EXTRA = "CHATBRIDGE_TRACING={mode} needs OpenTelemetry: pip install 'chatbridge[tracing]'"


def configure(mode: Mode = "otlp", *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on (``console``: spans printed to stdout; ``otlp``: sent with OTLP over
    HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``) or off. ``exporter`` replaces the mode's (the
    tests' in-memory one), exported as each span ends. Returns whether tracing is on.

    Raises:
        ImportError: tracing asked for without the ``tracing`` extra (one line naming it).
    """
    global ON, _tracer, _provider
    shutdown()
    if mode == "off" and exporter is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ImportError(_EXTRA.format(mode=mode)) from exc

    # OTEL_SERVICE_NAME (read by Resource.create) wins over our default name
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "chatbridge"}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ImportError(_EXTRA.format(mode=mode)) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    _tracer = provider.get_tracer("chatbridge")
    ON = True
    return True


def configure_from_settings(mode: str) -> bool:
    """Turn tracing on as the ``tracing`` setting (``CHATBRIDGE_TRACING``) says: ``otlp`` or
    ``console``; ``off`` leaves it as it is. Without the ``tracing`` extra it is one warning
    line and the bridge runs untraced: tracing never stops it. Returns whether this call
    turned tracing on."""
    if mode not in ("console", "otlp"):
        return False
    try:
        return configure("console" if mode == "console" else "otlp")
    except ImportError as exc:
        log.warning("%s; tracing stays off", exc)
        return False


def shutdown() -> None:
    """Turn tracing off, exporting the spans still buffered."""
    global ON, _tracer, _provider
    ON = False
    _tracer = None
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


# -- propagation: the W3C traceparent -----------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (None: no span is recording)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(KEY)


def _parent(traceparent: object) -> Any:
    """The OpenTelemetry context a stored ``traceparent`` names (None: start a new trace)."""
    if not isinstance(traceparent, str) or not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({KEY: traceparent})


def _links(traceparents: Sequence[object]) -> list[Any]:
    from opentelemetry.trace import Link, get_current_span

    links = []
    for traceparent in traceparents:
        context = _parent(traceparent)
        if context is not None:
            span_context = get_current_span(context).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
    return links


def _tracer_or_fail() -> Tracer:
    if _tracer is None:
        raise RuntimeError("tracing is off: test tracing.ON first")
    return _tracer


# -- the spans of a message's trace ---------------------------------------------------------------


@contextmanager
def webhook(channel: str) -> Iterator[Span]:
    """The span of a channel's inbound request (the root of its messages' traces)."""
    from opentelemetry.trace import SpanKind

    with _tracer_or_fail().start_as_current_span(
        "webhook", kind=SpanKind.SERVER, attributes={"chatbridge.channel": channel}
    ) as span:
        yield span


@contextmanager
def store_ingest(metadata: dict[str, Any], channel: str) -> Iterator[Span]:
    """The span of writing one inbound message. The message's ``metadata`` keeps the
    caller's span (the webhook's), so its turn continues the trace; a message that came
    without one (a web chat socket) starts its trace here."""
    outer = current_traceparent()
    with _tracer_or_fail().start_as_current_span(
        "store.ingest", attributes={"chatbridge.channel": channel}
    ) as span:
        traceparent = outer or current_traceparent()
        if traceparent is not None:
            metadata[KEY] = traceparent
        yield span


# What the spans read of the store's and the transports' records, as protocols: this module
# sits on the ground floor and may not import those layers (tests/test_layers.py).
class _HasMeta(Protocol):
    @property
    def meta(self) -> dict[str, Any]: ...


class _Conversation(Protocol):
    @property
    def channel(self) -> str: ...


class ClaimedTurn(Protocol):
    @property
    def messages(self) -> Sequence[_HasMeta]: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def attempts(self) -> int: ...


class TurnRequest(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def turn_key(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def frame(self) -> dict[str, Any]: ...


class DeliverySpec(Protocol):
    @property
    def payload(self) -> dict[str, Any]: ...


class ClaimedDelivery(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def turn_id(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def conversation(self) -> _Conversation: ...


@contextmanager
def turn(claimed: ClaimedTurn) -> Iterator[Span]:
    """The span of running a claimed turn, in the trace of its latest message (earlier
    messages merged into the turn are linked)."""
    stamps = [m.meta.get(KEY) for m in claimed.messages]
    parent = _parent(stamps[-1]) if stamps else None
    with _tracer_or_fail().start_as_current_span(
        "turn",
        context=parent,
        links=_links(stamps[:-1]),
        attributes={
            "chatbridge.conversation_id": claimed.conversation_id,
            "chatbridge.turn_id": claimed.key,
            "chatbridge.agent_id": claimed.agent_id,
            "chatbridge.attempt": claimed.attempts,
        },
    ) as span:
        yield span


@contextmanager
def agent_call(request: TurnRequest) -> Iterator[Span]:
    """The span of asking the agent; its traceparent goes into the ``user_message``."""
    from opentelemetry.trace import SpanKind

    with _tracer_or_fail().start_as_current_span(
        "agent.call",
        kind=SpanKind.CLIENT,
        attributes={
            "chatbridge.agent_id": request.agent_id,
            "chatbridge.turn_id": request.turn_key,
            "chatbridge.conversation_id": request.conversation_id,
        },
    ) as span:
        traceparent = current_traceparent()
        if traceparent is not None:
            request.frame[KEY] = traceparent
        yield span


def stamp_deliveries(specs: Sequence[DeliverySpec]) -> None:
    """Keep the current span's traceparent (the turn's) in each delivery's payload."""
    traceparent = current_traceparent()
    if traceparent is not None:
        for spec in specs:
            spec.payload[KEY] = traceparent


@contextmanager
def delivery(claimed: ClaimedDelivery) -> Iterator[Span]:
    """The span of sending one delivery, in the trace of the turn that wrote it."""
    from opentelemetry.trace import SpanKind

    attributes: dict[str, str | int] = {
        "chatbridge.conversation_id": claimed.conversation_id,
        "chatbridge.delivery_id": claimed.id,
        "chatbridge.delivery_kind": claimed.kind,
        "chatbridge.channel": claimed.conversation.channel,
        "chatbridge.attempt": claimed.attempts,
    }
    if claimed.turn_id is not None:
        attributes["chatbridge.turn_id"] = f"t_{claimed.turn_id}"
    with _tracer_or_fail().start_as_current_span(
        "delivery",
        context=_parent(claimed.payload.get(KEY)),
        kind=SpanKind.PRODUCER,
        attributes=attributes,
    ) as span:
        yield span


def outcome(span: Span, kind: str, error_code: str | None = None) -> None:
    """Mark the agent's answer on its span (an ``error`` answer sets the span's status)."""
    span.set_attribute("chatbridge.outcome", kind)
    if kind == "error":
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error_code or "error"))
