"""Schemathesis against the daemon's own OpenAPI schema, over the real socket: no 5xx.

Requests are generated from the schema (valid and invalid ones), sent with httpx over
the unix socket, and each answer is checked: never a server error, and the status,
content type and body are those the schema declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.daemon.conftest import Daemon

pytestmark = pytest.mark.slow

_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def http(module_daemon: Daemon) -> Iterator[httpx.Client]:
    with module_daemon.http() as client:
        yield client


def _send(http: httpx.Client, case: Any) -> httpx.Response:
    sent = case.as_transport_kwargs(base_url="http://lsdctl")
    return http.request(
        sent["method"],
        sent["url"],
        headers=sent.get("headers"),
        params=sent.get("params"),
        json=sent.get("json"),
        content=sent.get("data"),
        timeout=30,
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_answers_match_the_schema(
    http: httpx.Client, mode: GenerationMode
) -> None:
    # /shutdown would end the daemon under test; the daemon CLI tests cover it.
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json()).exclude(
        path="/v1/shutdown"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    skipped: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.validate_response(_send(http, case), checks=_CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): only in negative mode.
            assert mode == GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    assert len(skipped) < len(operations), skipped
