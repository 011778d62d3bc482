"""The GraphiQL page: its default document is valid against the schema (so the journey it
walks cannot rot), and it loads only vendored assets (no CDN: the IDE works offline)."""

from __future__ import annotations

import json
import re

from graphql import parse, validate

from app.graphiql import (
    ASSETS_DIR,
    ASSETS_URL,
    DEFAULT_DOCUMENT,
    DEFAULT_HEADERS,
    TOKEN_PLACEHOLDER,
    graphiql_html,
)
from app.schema import schema

MAX_VENDORED_BYTES = 5 * 1024 * 1024


def test_the_default_document_walks_the_journey_and_is_valid() -> None:
    document = parse(DEFAULT_DOCUMENT)
    assert validate(schema._schema, document) == []
    operations = [d.name.value for d in document.definitions if d.name]  # type: ignore[attr-defined]
    assert operations == ["Login", "MyOrders", "Order", "FollowOrder"]
    assert "Headers" in DEFAULT_DOCUMENT and TOKEN_PLACEHOLDER in DEFAULT_DOCUMENT


def test_the_headers_pane_is_prefilled_with_the_bearer_placeholder() -> None:
    assert json.loads(DEFAULT_HEADERS) == {"Authorization": f"Bearer {TOKEN_PLACEHOLDER}"}


def test_the_page_loads_only_vendored_assets() -> None:
    html = graphiql_html()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith(f"{ASSETS_URL}/") for s in sources)
    for source in sources:
        assert (ASSETS_DIR / source.removeprefix(f"{ASSETS_URL}/")).is_file(), source
    assert "unpkg.com" not in html and "cdn" not in html.lower()


def test_the_page_has_no_inline_script_or_style() -> None:
    """The page runs under `script-src 'self'; style-src 'self'` (app/console/headers.py):
    every script is a file, the only inline block is JSON data, which is never run."""
    html = graphiql_html()
    assert "<style" not in html and " style=" not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    inline = [(attrs, body) for attrs, body in scripts if "src=" not in attrs]
    assert len(inline) == 1
    attrs, body = inline[0]
    assert 'type="application/json"' in attrs
    settings = json.loads(body)
    assert settings["query"] == DEFAULT_DOCUMENT
    # nothing in the embedded settings can end the data block early
    assert "</" not in body
    assert re.search(r" on[a-z]+=", html) is None


def test_the_vendored_assets_stay_small() -> None:
    total = sum(p.stat().st_size for p in ASSETS_DIR.iterdir() if p.is_file())
    assert total < MAX_VENDORED_BYTES
