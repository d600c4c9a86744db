"""Every registered route, with every role: the status must match the route's access rule.

A route added without a rule fails here, so access is never forgotten.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount, Route

from app.auth.access import AccessRule, rule_of
from app.enums import Role
from app.routing import api_routes, other_routes
from tests.helpers import WebClient

ROLES: list[str | None] = [None, "labeler", "admin", "ops"]
# Routes FastAPI itself registers: the API description is public by design.
FRAMEWORK_PUBLIC = {"/api/openapi.json"}


def _fill(path: str, route: Any) -> str:
    for name, conv in route.param_convertors.items():
        value = "999999" if conv.__class__.__name__ in {"IntegerConvertor", "FloatConvertor"} else "nothing"
        path = path.replace("{" + name + ":int}", value).replace("{" + name + "}", value)
        path = path.replace("{" + name + ":path}", value)
    return path


def _expected(rule: AccessRule, role: str | None, status: int, method: str) -> str | None:
    """None when `status` fits the rule for `role`, else a description of what was expected."""
    if rule.anonymous_ok:
        # A public route never refuses by role (a failed sign-in may still answer 401).
        return None if status != 403 else "any status but 403 (public)"
    if rule.token_scope is not None:
        return None if status == 401 else "401 (API token required)"
    if role is None:
        if status == 401 or (status == 303 and method == "GET"):
            return None
        return "401, or 303 to /login"
    if Role(role) in rule.allowed_roles:
        return None if status not in (401, 403) else f"access for {role}"
    return None if status == 403 else f"403 for {role}"


def test_every_route_has_an_access_rule(app) -> None:
    missing = [f"{sorted(r.methods)} {r.path}" for r in api_routes(app) if rule_of(r.dependant) is None]
    for route in other_routes(app):
        if isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
        else:
            assert isinstance(route, Route) and route.path in FRAMEWORK_PUBLIC, f"{route} has no access rule"
    assert not missing, "routes without an access rule: " + ", ".join(missing)


def test_route_by_role_matrix(app, login) -> None:
    cookies: dict[str | None, dict[str, str]] = {None: {}}
    tokens: dict[str | None, str | None] = {None: None}
    for role in ROLES[1:]:
        web = login(role)
        cookies[role], tokens[role] = dict(web.cookies), web.csrf
    anon = WebClient(app)
    tokens[None] = anon.refresh_csrf("/login")
    cookies[None] = dict(anon.cookies)

    failures, checked = [], 0
    for route in api_routes(app):
        rule = rule_of(route.dependant)
        assert rule is not None
        for method in sorted(route.methods - {"HEAD"}):
            url = _fill(route.path, route)
            for role in ROLES:
                web = WebClient(app, cookies=cookies[role])
                web.csrf = tokens[role]
                resp = web.request(method, url)
                checked += 1
                if route.path == "/logout" and role is not None:
                    # sign-out invalidates every copy of the cookie: sign in again for the next routes
                    fresh = login(role)
                    cookies[role], tokens[role] = dict(fresh.cookies), fresh.csrf
                problem = _expected(rule, role, resp.status_code, method)
                if problem:
                    failures.append(
                        f"{method} {route.path} as {role or 'anonymous'}: got {resp.status_code}, "
                        f"expected {problem} [{rule.describe()}]"
                    )
    assert checked > 0
    assert not failures, "\n".join(failures)
