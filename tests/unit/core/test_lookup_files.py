"""Lookup table files: reading CSV/.xlsx uploads, row-numbered validation, formula-safe
writing that reads back exactly, and the snapshot a unit resolves through."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import openpyxl
import pytest

from junctionbox.errors import PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError
from junctionbox.services.lookups import (
    build_snapshot,
    read_table,
    validate_rows,
    write_csv,
    write_xlsx,
)
from junctionbox.store.queries.lookups import LookupRecord

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def record(key: str, value: str, description: str | None = None, kind: str = "T") -> LookupRecord:
    return LookupRecord("lkp_1", 1, kind, key, value, description, NOW, NOW)


def cells(data: bytes) -> list[tuple[int, dict[str, object]]]:
    return [(row.number, row.cells) for row in read_table(data, filename=None, max_rows=100)]


def test_csv_header_names_columns_in_any_order_and_case() -> None:
    data = "\ufeffValue,KEY,description\r\n1,a,\r\n\r\n,,\r\n2,b,x\r\n".encode()
    assert cells(data) == [
        (2, {"value": "1", "key": "a", "description": ""}),
        (5, {"value": "2", "key": "b", "description": "x"}),
    ]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_read_off_the_header(delimiter: str) -> None:
    data = f'key{delimiter}value\na{delimiter}"x, y; z"\n'.encode()
    assert cells(data) == [(2, {"key": "a", "value": "x, y; z"})]


def test_missing_cells_are_none_and_the_type_column_is_optional() -> None:
    assert cells(b"type,key,value\nA,k\n") == [(2, {"type": "A", "key": "k", "value": None})]


@pytest.mark.parametrize(
    ("data", "row", "text"),
    [
        (b"", "row 1", "empty"),
        (b"key,value,colour\n", "row 1", "unknown column 'colour'"),
        (b"key,key,value\n", "row 1", "repeats"),
        (b"value\n", "row 1", "no 'key' column"),
        (b"key,value\na,1,2\n", "row 2", "more cells"),
        (b"key,value\n\xc3(\n", "row 2", "UTF-8"),
        (b'key,value\n"a,1\n', "row 2", "not valid CSV"),
    ],
)
def test_unreadable_tables_name_the_row(data: bytes, row: str, text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        read_table(data, filename="t.csv", max_rows=10)
    assert caught.value.problems[0].loc[:2] == ("file", row)
    assert text in caught.value.message


def test_row_and_size_limits() -> None:
    with pytest.raises(ValidationError, match="more than 2 rows"):
        read_table(b"key,value\na,1\nb,2\nc,3\n", filename=None, max_rows=2)
    with pytest.raises(UnsupportedMediaTypeError):
        read_table(b"\xd0\xcf\x11\xe0rest", filename="old.xls", max_rows=2)
    with pytest.raises(ValidationError, match="not an Excel workbook"):
        read_table(b"key,value\n", filename="book.xlsx", max_rows=2)


def test_a_zip_bomb_is_refused_before_it_is_inflated() -> None:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", b"\0" * (101 * 1024 * 1024))
    with pytest.raises(PayloadTooLargeError):
        read_table(out.getvalue(), filename="bomb.xlsx", max_rows=10)


def test_validation_lists_every_bad_row_and_duplicate_keys() -> None:
    rows = read_table(b"key,value\na,1\n ,2\nb,\na,3\n", filename=None, max_rows=10)
    with pytest.raises(ValidationError) as caught:
        validate_rows(rows, "T")
    locations = [p.loc for p in caught.value.problems]
    assert locations == [
        ("file", "row 3", "key"),
        ("file", "row 4", "value"),
        ("file", "row 5", "key"),
    ]
    assert "row 2" in caught.value.problems[2].message
    assert caught.value.message.startswith("import refused, nothing was imported: row 3: key")
    assert "(and 2 more problems)" in caught.value.message


def test_validation_trims_keys_keeps_values_and_takes_the_row_type() -> None:
    rows = read_table(b"type,key,value\n,  k ,  v \nB,k,w\n", filename=None, max_rows=10)
    entries = validate_rows(rows, "A")
    assert [(e.type, e.key, e.value) for e in entries] == [("A", "k", "  v "), ("B", "k", "w")]


def test_csv_export_defuses_formulas_and_reads_back_exactly() -> None:
    tricky = ["=1+2", "+1", "-1", "@x", "'quoted", "'=both", "plain", "a'b"]
    data = write_csv([record(f"k{i}", v) for i, v in enumerate(tricky)], with_type=False)
    lines = data.decode().splitlines()
    assert lines[0] == "key,value,description"
    assert lines[1] == "k0,'=1+2,"
    assert all(not line.split(",")[1].startswith(("=", "+", "-", "@")) for line in lines[1:])
    back = validate_rows(read_table(data, filename=None, max_rows=100), "T")
    assert [e.value for e in back] == tricky


def test_xlsx_export_keeps_formula_text_as_text_and_reads_back() -> None:
    records = [record("1", "=SUM(A1:A9)", "d"), record("2", "two", None, kind="U")]
    data = write_xlsx(records, with_type=True, title="all")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    assert sheet["C2"].data_type == "s"
    back = validate_rows(read_table(data, filename="x.xlsx", max_rows=10), None)
    assert [(e.type, e.key, e.value, e.description) for e in back] == [
        ("T", "1", "=SUM(A1:A9)", "d"),
        ("U", "2", "two", None),
    ]


def test_xlsx_numbers_and_dates_become_text() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["key", "value"])
    sheet.append([7.0, datetime(2024, 5, 1, 9, 30)])
    sheet.append([True, 0.25])
    out = io.BytesIO()
    book.save(out)
    assert [r.cells for r in read_table(out.getvalue(), filename=None, max_rows=5)] == [
        {"key": "7", "value": "2024-05-01T09:30:00"},
        {"key": "true", "value": "0.25"},
    ]


def test_a_units_snapshot_overrides_its_organization() -> None:
    rows = [(101, "G", "F", "Frau"), (100, "G", "F", "Female"), (100, "G", "M", "Male")]
    snapshot = build_snapshot(101, (100, 101), rows)
    assert snapshot.resolve("G", "F") == "Frau"
    assert snapshot.resolve("G", "M") == "Male"
    assert snapshot.resolve("H", "M") is None
    assert len(snapshot) == 2
