"""Tracing on, with the OpenTelemetry SDK's in-memory exporter, for the test that asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chatbridge import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the bridge ends while the test runs (tracing off again after it)."""
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()
