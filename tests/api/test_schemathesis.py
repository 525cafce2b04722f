"""Schemathesis against the app's own OpenAPI document: no request it can build from the
document, valid or not, gets a 5xx from the live bridge (webhook and management endpoints)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from tests.api.conftest import ADMIN_KEY, NO_KEEPALIVE, module_database_url
from tests.api.live import Live, live_stack


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def unsigned_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """No webhook secret, so generated webhook bodies reach the parser and the store."""
    url = module_database_url(request, tmp_path_factory)
    with live_stack(url, admin_key=ADMIN_KEY) as stack:
        yield stack


# The live stack runs in a thread of this process, and the websockets library draws each
# keepalive ping's payload from the global ``random`` module (the bridge's own jitter does
# not). A ping that lands while Hypothesis draws a case changes the global state under it,
# which Hypothesis reports as this deprecation. Only that message, only here, is let through.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
# 16 generated requests for every operation of a document that grows with the API (operator
# accounts hash passwords with argon2id on purpose slowly): past two minutes on a loaded
# 2-core machine with PostgreSQL
@pytest.mark.timeout(300)
def test_no_generated_request_is_a_server_error(unsigned_live: Live) -> None:
    live = unsigned_live
    with requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {ADMIN_KEY}", **NO_KEEPALIVE})
        raw = session.get(f"{live.url}/openapi.json", timeout=30).json()
        schema = schemathesis.openapi.from_dict(raw)
        # an Err (an operation schemathesis cannot read) has no .ok(): the test fails on it
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {op.label for op in operations} >= {
            "POST /webhook/chatwoot",
            "POST /config/mappings",
            "PUT /config/mappings/{inbox_id}",
            "DELETE /config/mappings/{inbox_id}",
            "POST /dead-letters/{delivery_id}/retry",
            "POST /api/webchat/sessions",
            "POST /api/webchat/sessions/{session_id}/messages",
            "GET /api/webchat/sessions/{session_id}/messages",
            "GET /api/agent/turns",
            "POST /api/agent/turns/{turn_id}/reply",
        }
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=8,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: schemathesis.Case) -> None:
                    response = case.call(base_url=live.url, session=session, timeout=30)
                    case.validate_response(response, checks=[not_a_server_error])

                try:
                    call()
                except Unsatisfiable:
                    # nothing to make invalid: the operation takes no parameters
                    assert mode is GenerationMode.NEGATIVE, operation.label
