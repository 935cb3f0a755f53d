"""The PostgreSQL rows of a statement: a few as scalar parameters, more as arrays."""

from __future__ import annotations

from junctionbox.store.queries.driver_calls import (
    pg_rows,
    pg_rows_arguments,
    pg_rows_form,
    pg_rows_width,
)


def test_a_single_row_is_scalar_parameters_numbered_from_the_first() -> None:
    assert pg_rows(["int", "text"], 3, 1) == "(VALUES ($3::int, $4::text))"
    assert pg_rows_arguments([(1, "a")], 2) == [1, "a"]


def test_a_caller_may_allow_more_rows_as_scalars() -> None:
    text = pg_rows(["int", "text"], 3, 2, at_most=4)
    assert text == "(VALUES ($3::int, $4::text), ($5::int, $6::text))"
    assert pg_rows_arguments([(1, "a"), (2, "b")], 2, at_most=4) == [1, "a", 2, "b"]


def test_more_rows_are_one_array_per_column() -> None:
    assert pg_rows(["int", "text"], 1, 2) == "unnest($1::int[], $2::text[])"
    assert pg_rows(["int"], 1, 5, at_most=4) == "unnest($1::int[])"
    rows = [(n, str(n)) for n in range(5)]
    assert pg_rows_arguments(rows, 2, at_most=4) == [list(range(5)), [str(n) for n in range(5)]]


def test_no_rows_are_empty_arrays() -> None:
    assert pg_rows(["int"], 1, 0) == "unnest($1::int[])"
    assert pg_rows_arguments([], 2) == [[], []]


def test_the_form_names_each_text() -> None:
    assert [pg_rows_form(n) for n in range(4)] == [0, 1, 0, 0]
    assert [pg_rows_form(n, at_most=4) for n in range(7)] == [0, 1, 2, 3, 4, 0, 0]


def test_the_width_counts_the_parameters_the_text_takes() -> None:
    for count, at_most in ((1, 1), (2, 1), (3, 4), (5, 4), (0, 1)):
        arguments = pg_rows_arguments([(1, "a")] * count, 2, at_most=at_most)
        assert pg_rows_width(2, count, at_most=at_most) == len(arguments)
