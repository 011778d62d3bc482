"""Opaque, signed cursors. They carry a sort key (never an internal id) and an HMAC, so a
client can neither read them as ids nor forge one; queries still filter by the viewer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from app.errors import BadUserInput


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("cursor:" + secret).encode()).digest()

    def encode(self, kind: str, values: list[Any]) -> str:
        payload = json.dumps([kind, values], separators=(",", ":")).encode()
        tag = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(tag + payload).decode().rstrip("=")

    def decode(self, kind: str, cursor: str) -> list[Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            tag, payload = raw[:12], raw[12:]
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
            if not hmac.compare_digest(tag, expected):
                raise ValueError("bad signature")
            found_kind, values = json.loads(payload)
            if found_kind != kind or not isinstance(values, list):
                raise ValueError("wrong kind")
            return values
        except (ValueError, TypeError) as exc:
            raise BadUserInput("The cursor is not valid.", field="after") from exc


def clamp_page_size(first: int | None, maximum: int, default: int = 20) -> int:
    if first is None:
        return min(default, maximum)
    if first < 1 or first > maximum:
        raise BadUserInput(f"`first` must be between 1 and {maximum}.", field="first")
    return first
