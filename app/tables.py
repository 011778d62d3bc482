"""Typed query helpers for SQLModel tables.

SQLModel declares table attributes as Python values (`Order.code: str`) and does not declare
`__table__` at all, so Core statements built from them do not type-check. These helpers give
the type checker what SQLAlchemy has at run time, at the one place the gap is bridged:
`table(Order).c.code` for Core statements (the prebuilt hot-path reads), and
`sqlmodel.col(Order.code)` for ORM expressions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.engine import CursorResult, Result
from sqlmodel import SQLModel


def table(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel table class."""
    found = inspect(model).local_table
    if not isinstance(found, Table):  # a mapped class always has one; not a plain model
        raise TypeError(f"{model.__name__} is not a table")
    return found


def rows_changed(result: Result[Any]) -> int:
    """Rows an UPDATE/DELETE touched. `AsyncSession.execute` is typed as returning a plain
    `Result`; for DML it is a `CursorResult`, which has the count."""
    if not isinstance(result, CursorResult):
        raise TypeError("rows_changed() takes the result of an UPDATE or DELETE")
    return result.rowcount
