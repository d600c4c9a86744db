"""The JSON API under property-based fuzzing (schemathesis, from its OpenAPI description):
never a 5xx, every refusal a 4xx with a clear message; and API tokens hashed, scoped, revocable."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import select

from app.auth.models import ApiToken
from app.auth.service import create_api_token, revoke_api_token


@pytest.fixture()
def bearer(db, factory) -> str:
    """A prompts:write token, and a queue for the fuzzer to hit by id 1..n or name."""
    factory.queue("demonstration", name="fuzz")
    _, plain = create_api_token(db, "fuzz", ["prompts:write"], factory.user("admin"))
    db.commit()
    return plain


def test_api_never_fails_with_5xx_and_explains_refusals(app, bearer) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app).include(path_regex="^/api/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert [op.path for op in operations] == ["/api/prompts"]
    strategies = [op.as_strategy(generation_mode=mode) for op in operations
                  for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for strategy in strategies:

        @given(case=strategy)
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case) -> None:  # type: ignore[no-untyped-def]
            if isinstance(case.body, dict) and case.body.get("queue") is not None:
                case.body["queue"] = "fuzz"  # the queue that exists, so rows reach the importer
            for headers in ({"Authorization": f"Bearer {bearer}"}, {}):
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])
                assert response.status_code < 500
                if response.status_code >= 400:
                    body = response.json()
                    message = body.get("detail") or body.get("report")
                    assert message, f"{response.status_code} without a message: {response.text[:200]}"
                for name in ("x-content-type-options", "content-security-policy"):
                    assert name in response.headers

        fuzz()


def test_tokens_are_hashed_scoped_and_revocable(db, factory, client) -> None:
    q = factory.queue("demonstration")
    admin = factory.user("admin")
    writer, plain = create_api_token(db, "writer", ["prompts:write"], admin)
    _, reader = create_api_token(db, "reader", ["exports:read"], admin)
    assert plain not in {t.token_hash for t in db.scalars(select(ApiToken))}  # only hashes are stored
    body = {"queue": q.id, "prompts": [{"prompt": "What is a haiku?"}]}
    ok = client.post("/api/prompts", json=body, headers={"Authorization": f"Bearer {plain}"})
    assert ok.status_code == 201
    wrong_scope = client.post("/api/prompts", json=body, headers={"Authorization": f"Bearer {reader}"})
    assert wrong_scope.status_code == 403 and "prompts:write" in wrong_scope.json()["detail"]
    revoke_api_token(db, writer.id)
    revoked = client.post("/api/prompts", json=body, headers={"Authorization": f"Bearer {plain}"})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
