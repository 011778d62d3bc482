"""Rows written straight into a SQLite database at an old migration revision (migration
tests: the tables of that revision, not of today's models)."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any


def insert_row(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> int:
    """A row with `values`, and a placeholder for every other required column."""
    row = dict(values)
    for _, name, kind, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})"):
        if notnull and default is None and not pk and name not in row:
            kind = kind.upper()
            row[name] = (
                0
                if "INT" in kind or "BOOL" in kind
                else "2026-11-20 10:00:00.000000"
                if "DATE" in kind
                else f"{name}-{uuid.uuid4().hex[:8]}"[:3]
                if name.endswith(("currency", "country"))
                else f"{name}-{uuid.uuid4().hex[:8]}"
            )
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))
    assert cursor.lastrowid is not None
    return cursor.lastrowid
