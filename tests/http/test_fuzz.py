"""The API fuzzed from its own OpenAPI schema, in-process: whatever a client sends, the app
never answers 500, and every answer matches the schema (status, content type, body)."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.http import HttpSettings, create_app
from saleday.http.auth import issue_token
from tests.http.conftest import KINDS, SECRETS, now_ms

HTTP = HttpSettings(**SECRETS, rate_per_s=1e6, rate_burst=1_000_000)
APP = create_app(LocalShards(open_store(f"memory://fuzz-{uuid.uuid4().hex}"),
                             {**KINDS, "member": 1, "price": 1, "presale": 1},
                             autoflush=True, clock=now_ms), settings=HTTP)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
USER = {"Authorization": f"Bearer {issue_token('fuzzer', HTTP)}"}
OPERATOR = {"Authorization": f"Bearer {SECRETS['operator_token']}"}


@pytest.mark.filterwarnings("ignore")
@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_app_fail_or_leave_its_schema(case):
    """Generated requests to every operation get no 500 and answers that match the schema."""
    operator_route = (case.path.startswith("/v1/admin")
                      or case.path in ("/v1/views/metrics", "/v1/warroom"))
    headers = dict(case.headers or {})
    if "Authorization" not in headers:
        headers.update(OPERATOR if operator_route else USER)
    case.call_and_validate(headers=headers, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
