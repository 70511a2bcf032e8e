"""Schemathesis against the live server's OpenAPI schema: every operation, the agent API with a token.

Each operation gets generated requests, valid and invalid alike; a 5xx or a response that does not
match the schema documented for its status code fails the test. The example count is kept small
for the default suite; CONVSSL_FUZZ_EXAMPLES=500 runs a longer campaign.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.serve.conftest import agent_headers, start_server

EXAMPLES = int(os.environ.get("CONVSSL_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def live(tmp_path_factory, make_config):
    config = make_config(tmp_path_factory.mktemp("fuzz") / "serve.sqlite3",
                         **{"limits.requests_per_minute": 0, "limits.max_sessions_per_minute": 0})
    with start_server(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_no_server_errors_and_every_response_matches_its_schema(api_schema, live):
    # One hypothesis run per operation (schemathesis' own pytest plugin needs a newer pytest API).
    for operation in operations(api_schema):
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.call_and_validate(base_url=live.url, headers=agent_headers(), timeout=20,
                                   checks=[not_a_server_error, response_schema_conformance])

        fuzz()


def test_every_operation_is_covered(api_schema):
    paths = {op.path for op in operations(api_schema)}
    assert {"/v1/chat", "/v1/feedback", "/v1/agent/queue", "/v1/agent/messages/{message_id}/label",
            "/v1/agent/sessions/{session_id}/resolve", "/healthz"} <= paths
