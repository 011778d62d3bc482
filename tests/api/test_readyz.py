"""/readyz with Redis configured: ready only while Redis answers (rate limits and live
updates of every instance depend on it); /healthz stays up either way."""

from __future__ import annotations

from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.redis


def test_ready_when_database_migrations_and_redis_answer(
    settings: Settings, redis_url: str
) -> None:
    # given an instance configured with a reachable Redis
    with TestClient(create_app(replace(settings, redis_url=redis_url), run_sender=False)) as http:
        # when a load balancer asks whether it is ready
        response = http.get("/readyz")
    # then it is, and says which checks passed
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": {"database": True, "migrations": True, "redis": True},
    }


def test_not_ready_when_redis_is_unreachable(settings: Settings) -> None:
    # given an instance whose Redis cannot be reached (nothing listens on port 1)
    unreachable = replace(settings, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(unreachable, run_sender=False)) as http:
        # when asked
        ready = http.get("/readyz")
        alive = http.get("/healthz")
    # then it is taken out of rotation (503, redis false) while the process stays alive
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["checks"]["redis"] is False
    assert ready.json()["checks"]["database"] is True
    assert alive.status_code == 200
