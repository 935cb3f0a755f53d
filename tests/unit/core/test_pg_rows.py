"""The PostgreSQL rows of a statement: a few as scalar parameters, more as arrays."""

from __future__ import annotations

from junctionbox.store.queries.driver_calls import (
    PG_VALUES_AT_MOST,
    pg_rows,
    pg_rows_arguments,
    pg_rows_form,
)


def test_a_few_rows_are_scalar_parameters_numbered_from_the_first() -> None:
    assert pg_rows(["int", "text"], 3, 2) == "(VALUES ($3::int, $4::text), ($5::int, $6::text))"
    assert pg_rows_arguments([(1, "a"), (2, "b")], 2) == [1, "a", 2, "b"]


def test_more_rows_are_one_array_per_column() -> None:
    count = PG_VALUES_AT_MOST + 1
    assert pg_rows(["int", "text"], 1, count) == "unnest($1::int[], $2::text[])"
    rows = [(n, str(n)) for n in range(count)]
    assert pg_rows_arguments(rows, 2) == [list(range(count)), [str(n) for n in range(count)]]


def test_no_rows_are_empty_arrays() -> None:
    assert pg_rows(["int"], 1, 0) == "unnest($1::int[])"
    assert pg_rows_arguments([], 2) == [[], []]


def test_the_form_names_each_text() -> None:
    forms = [pg_rows_form(n) for n in range(PG_VALUES_AT_MOST + 3)]
    assert forms == [*range(PG_VALUES_AT_MOST + 1), 0, 0]
