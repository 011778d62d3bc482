"""The server's start-up heap is frozen while it serves (app/heap.py): the collector's
oldest generation no longer walks the schema, the mappers and the modules every few dozen
requests, and its youngest generation is collected less often. At shutdown both are
undone, so a process that builds many apps (this test suite) still frees their cycles."""

from __future__ import annotations

import gc

from starlette.testclient import TestClient

from app.container import Services
from app.heap import YOUNG_THRESHOLD
from app.main import create_app
from app.settings import Settings


def test_the_servers_start_up_heap_is_frozen_while_serving_and_handed_back_at_shutdown(
    settings: Settings, services: Services
) -> None:
    app = create_app(settings, run_sender=False, services=services, freeze_heap=True)
    thresholds = gc.get_threshold()
    with TestClient(app) as client:
        frozen = gc.get_freeze_count()
        serving = gc.get_threshold()
        assert client.get("/healthz").status_code == 200
    # the schema, the ORM and the modules alone are well over this many objects
    assert frozen > 50_000
    assert serving == (YOUNG_THRESHOLD, *thresholds[1:]) != thresholds
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


def test_an_app_built_for_the_tests_leaves_the_collector_alone(
    settings: Settings, services: Services
) -> None:
    thresholds = gc.get_threshold()
    with TestClient(create_app(settings, run_sender=False, services=services)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
