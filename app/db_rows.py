"""Rows of the hot path's prebuilt SELECTs (app/db.py `fetch_all`) as values the models
expect: SQLite gives dates and times as ISO strings, which are parsed here by the selected
column's type.

A history page turns some 80 rows into models, and in the server that was a fifth of the
page's time on SQLite (in-process, the models cached instead of built: 1.21 times the pages a
second). So what each statement's rows need is worked out once (`_Shape`), and a row costs
a `dict(zip(...))`, the parse of its non-null date and time strings, and four attribute
stores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import Date, DateTime, Select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel

M = TypeVar("M", bound=SQLModel)

_new = object.__new__
_set = object.__setattr__
# SQLAlchemy stores a DateTime on SQLite as naive UTC text ("2026-11-30 16:24:39.000000").
# Parsing it with this suffix gives the aware datetime in one call; `.replace(tzinfo=UTC)`
# after the parse cost six times the parse itself (0.73 µs: keyword arguments).
_UTC_SUFFIX = "+00:00"


class _Shape:
    """What one statement's rows need: the column keys, which of them are dates or times,
    and (per model) whether the statement selects every field of the model."""

    __slots__ = ("complete", "fields_set", "keys", "temporal")

    def __init__(self, statement: Select[Any]) -> None:
        columns = list(statement.selected_columns)
        self.keys = tuple(str(column.key) for column in columns)
        self.temporal = [
            (index, key, kind is datetime)
            for index, (key, column) in enumerate(zip(self.keys, columns, strict=True))
            if (kind := _temporal_kind(column.type)) is not None
        ]
        self.complete: dict[type, bool] = {}
        # Every instance built from this statement shares one fields set: they all set
        # every field, and pydantic only ever adds a field's name to it (a no-op here).
        self.fields_set = set(self.keys)

    def values(self, row: Sequence[Any]) -> dict[str, Any]:
        if len(row) != len(self.keys):
            raise ValueError(f"a row of {len(row)} values for {len(self.keys)} columns")
        values = dict(zip(self.keys, row, strict=False))  # (the length is checked above)
        for index, key, is_datetime in self.temporal:  # only these need a look
            value = row[index]
            if value.__class__ is str:
                values[key] = _parse_datetime(value) if is_datetime else date.fromisoformat(value)
        return values

    def selects_every_field(self, model: type[SQLModel]) -> bool:
        found = self.complete.get(model)
        if found is None:
            # The models' attributes read `__dict__` only once SQLAlchemy has set up its
            # mappers (a session does it on first use; a read may come first).
            configure_mappers()
            found = self.complete[model] = set(model.model_fields) <= set(self.keys)
        return found


# Keyed by the statement itself (module-level constants, as app/db.py's caches are).
_shapes: dict[Select[Any], _Shape] = {}


def _shape_of(statement: Select[Any]) -> _Shape:
    shape = _shapes.get(statement)
    if shape is None:
        shape = _shapes[statement] = _Shape(statement)
    return shape


def _parse_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text + _UTC_SUFFIX)
    except ValueError:  # not the naive form SQLAlchemy writes (it carries an offset)
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def row_values(statement: Select[Any], row: Sequence[Any]) -> dict[str, Any]:
    """Name the values of a `fetch_one` row and give dates and times their Python types
    (SQLite hands them back as ISO strings; PostgreSQL already as datetime/date)."""
    return _shape_of(statement).values(row)


def as_models(model: type[M], statement: Select[Any], rows: Sequence[Sequence[Any]]) -> list[M]:
    """Rows of a prebuilt `select(*Model.__table__.columns)` as (unsaved, read-only) model
    instances, for the API layer to read attributes from.

    Built as `model_construct` builds them — the values in `__dict__` (where SQLAlchemy's
    attributes read them), the fields set, no extra, no private attributes — without its
    per-call work (defaults, field lookups, SQLModel's `__new__`). A statement that does
    not select every field of the model goes through `model_construct`, which fills the
    defaults."""
    shape = _shape_of(statement)
    if not shape.selects_every_field(model):
        return [model.model_construct(**shape.values(row)) for row in rows]
    return _build(model, shape, rows)


def as_partial_models(
    model: type[M], statement: Select[Any], rows: Sequence[Sequence[Any]]
) -> list[M]:
    """Rows of a prebuilt SELECT of some of the model's columns as read-only instances that
    hold only those: reading any other field raises `UnreadField` instead of answering a
    default, so a reader that needs more than its statement selects fails loudly in its
    tests, never quietly in production."""
    return _build(model, _shape_of(statement), rows)


def _build(model: type[M], shape: _Shape, rows: Sequence[Sequence[Any]]) -> list[M]:
    values_of = shape.values
    fields_set = shape.fields_set
    cls = _read_only_class(model)
    built: list[M] = []
    for row in rows:
        instance = _new(cls)
        _set(instance, "__dict__", values_of(row))
        _set(instance, "__pydantic_fields_set__", fields_set)
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        built.append(instance)
    return built


class UnreadField(LookupError):
    """A field its statement did not select, read from a row built from that statement."""


class _Unread:
    """Stands in a read-only class for a mapped column: a value in the instance's
    `__dict__` is read before it (a non-data descriptor), so it only answers for a column
    the statement did not select — by raising, never with a default."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self
        raise UnreadField(f"{owner.__name__}.{self.name} was not selected by this statement")


_read_only: dict[type, type] = {}


def _read_only_class(model: type[M]) -> type[M]:
    """The model's read-only twin: a subclass, so `isinstance` and every method and
    property of the model still hold, whose mapped columns are `_Unread`s instead of
    SQLAlchemy's attributes. A read of a mapped attribute is a Python call of SQLAlchemy's
    (`InstrumentedAttribute.__get__`: some 400 a history page); shadowed by a non-data
    descriptor it is the interpreter's own `__dict__` lookup, four times as fast.

    Made with `type.__new__`, so the metaclass's `__init__` (SQLAlchemy's mapping,
    SQLModel's table set-up) never runs: the twin is not mapped, not in the registry and
    not a table, and a session refuses its instances as it refuses any unmapped object."""
    twin = _read_only.get(model)
    if twin is None:
        configure_mappers()
        mapper = sa_inspect(model)
        if mapper.relationships:
            # SQLAlchemy instruments a relationship's backref on subclasses too (which
            # would map the twin): none of the read models has one; one that does keeps
            # SQLAlchemy's attributes.
            _read_only[model] = model
            return model
        namespace: dict[str, Any] = {prop.key: _Unread(prop.key) for prop in mapper.column_attrs}
        name = f"{model.__name__}Row"
        namespace["__module__"] = model.__module__
        namespace["__qualname__"] = name
        twin = _read_only[model] = type.__new__(type(model), name, (model,), namespace)
    return twin


def as_model(model: type[M], statement: Select[Any], row: Sequence[Any]) -> M:
    """One row of a prebuilt `select(*Model.__table__.columns)` as a read-only instance."""
    return as_models(model, statement, (row,))[0]


def _temporal_kind(column_type: Any) -> type | None:
    """datetime or date for DateTime/Date columns (TypeDecorators by their impl)."""
    impl = getattr(column_type, "impl", column_type)
    if isinstance(impl, DateTime):
        return datetime
    if isinstance(impl, Date):
        return date
    return None
