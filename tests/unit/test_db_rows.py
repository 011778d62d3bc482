"""Rows of the hot path's SELECTs become read-only model instances (app/db_rows.py
`as_model`) built without `model_construct`'s per-call work: the same values, the same
fields set, the same answers to every attribute the API reads, as `model_construct`
gives; a statement that leaves fields out still gets the model's defaults."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Date, DateTime, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.exc import UnmappedError, UnmappedInstanceError
from sqlmodel import SQLModel

from app.db_rows import as_model, as_models
from app.engines import make_engine
from app.models import Order, OrderLine, ReturnRequest, Shipment, TrackingEvent
from app.tables import table

MODELS: list[type[SQLModel]] = [Order, OrderLine, Shipment, TrackingEvent, ReturnRequest]
# one statement per model, built once, as the app's are
EVERY_COLUMN = {model: select(*table(model).columns) for model in MODELS}


def _row_for(model: type[SQLModel]) -> tuple[Any, ...]:
    """A row as SQLite's driver gives it: dates and times as ISO strings."""
    values: list[Any] = []
    for index, column in enumerate(table(model).columns):
        impl = getattr(column.type, "impl", column.type)
        if isinstance(impl, DateTime):
            values.append(f"2026-11-{index + 1:02d}T10:00:00")
        elif isinstance(impl, Date):
            values.append(f"2026-12-{index + 1:02d}")
        elif column.type.python_type is int:
            values.append(index + 7)
        else:
            values.append(f"value-{index}")
    return tuple(values)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_row_reads_as_model_construct_would_give_it(model: type[SQLModel]) -> None:
    statement = EVERY_COLUMN[model]
    row = _row_for(model)
    built = as_model(model, statement, row)
    keys = [str(c.key) for c in statement.selected_columns]
    expected = model.model_construct(**dict(zip(keys, row, strict=True)))
    assert type(built).__mro__[1] is model  # its read-only twin (below)
    assert built.__pydantic_fields_set__ == set(keys)
    for key, raw in zip(keys, row, strict=True):
        value = getattr(built, key)
        if isinstance(raw, str) and raw.startswith("2026-11-"):
            assert value == datetime.fromisoformat(raw).replace(tzinfo=UTC)
        elif isinstance(raw, str) and raw.startswith("2026-12-"):
            assert value == date.fromisoformat(raw)
        else:
            assert value == getattr(expected, key) == raw
    assert [m.model_dump() for m in as_models(model, statement, [row, row])] == [
        built.model_dump(),
        built.model_dump(),
    ]


_SOME_COLUMNS = select(table(OrderLine).c.id, table(OrderLine).c.sku)


def test_a_statement_without_every_field_still_gets_the_defaults() -> None:
    built = as_model(OrderLine, _SOME_COLUMNS, (3, "SKU-1"))
    assert (built.id, built.sku) == (3, "SKU-1")
    # the fields the SELECT left out read as the model's defaults, as model_construct does
    for name, field in OrderLine.model_fields.items():
        if name not in {"id", "sku"} and not field.is_required():
            assert getattr(built, name) == field.get_default(call_default_factory=True)


_PLACED = select(table(Order).c.id, table(Order).c.placed_at)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        # as SQLAlchemy writes a DateTime on SQLite: naive UTC with microseconds
        ("2026-11-30 16:24:39.000000", datetime(2026, 11, 30, 16, 24, 39, tzinfo=UTC)),
        ("2026-11-30 16:24:39.250000", datetime(2026, 11, 30, 16, 24, 39, 250000, tzinfo=UTC)),
        # text that already carries an offset keeps it (converted only by the API's `utc`)
        ("2026-11-30T18:24:39+02:00", datetime(2026, 11, 30, 16, 24, 39, tzinfo=UTC)),
        ("2026-11-30T16:24:39Z", datetime(2026, 11, 30, 16, 24, 39, tzinfo=UTC)),
    ],
)
def test_stored_times_read_as_aware_utc_datetimes(stored: str, expected: datetime) -> None:
    placed = as_model(Order, _PLACED, (1, stored)).placed_at
    assert placed == expected
    assert placed.utcoffset() is not None


def test_a_row_of_the_wrong_length_is_refused_not_misread() -> None:
    with pytest.raises(ValueError, match="a row of 3 values for 2 columns"):
        as_models(Order, _PLACED, [(1, "2026-11-30 16:24:39.000000", "extra")])


def test_instances_are_read_only_so_sharing_one_fields_set_is_safe() -> None:
    statement = EVERY_COLUMN[OrderLine]
    first, second = as_models(OrderLine, statement, [_row_for(OrderLine)] * 2)
    assert first.__pydantic_fields_set__ == {str(c.key) for c in statement.selected_columns}
    with pytest.raises(UnmappedError):  # not mapped: nothing can change a field
        first.sku = "CHANGED"
    assert (first.sku, second.sku) == ("value-3", "value-3")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_rows_are_instances_of_an_unmapped_twin_that_leaves_the_model_as_it_was(
    model: type[SQLModel],
) -> None:
    built = as_model(model, EVERY_COLUMN[model], _row_for(model))
    twin = type(built)
    assert isinstance(built, model) and twin is not model
    # the twin is no mapped class, and the model gained no mapped subclass through it
    assert sa_inspect(twin, raiseerr=False) is None
    assert list(sa_inspect(model).self_and_descendants) == [sa_inspect(model)]
    # a session refuses its instances, as it refuses any unmapped object
    with Session(make_engine("sqlite://")) as session, pytest.raises(UnmappedInstanceError):
        session.add(built)
    # a column its statement selected reads from the row; the model's reads are unchanged
    key = str(next(iter(EVERY_COLUMN[model].selected_columns)).key)
    assert getattr(built, key) == built.__dict__[key]
    assert isinstance(model.__dict__[key], InstrumentedAttribute)
