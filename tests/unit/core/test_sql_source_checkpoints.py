"""A SQL source's text checkpoint is read back as a value of the id column's type."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.types import Integer, NullType, Numeric, String, Uuid

from junctionbox.connectors.sql_source import coerce_checkpoint

ID = "0b9e3c4a-2f0e-4c1b-9a57-8d6a1f2e3b4c"


def test_numbers_compare_as_numbers() -> None:
    assert coerce_checkpoint("42", Integer()) == 42
    assert coerce_checkpoint("4.50", Numeric()) == Decimal("4.50")
    assert coerce_checkpoint("42", NullType()) == 42  # SQLite without a declared type


def test_uuid_columns_get_uuids_unless_they_hold_text() -> None:
    assert coerce_checkpoint(ID, UUID()) == uuid.UUID(ID)
    assert coerce_checkpoint(ID, Uuid()) == uuid.UUID(ID)
    assert coerce_checkpoint(ID, Uuid(as_uuid=False)) == ID
    assert coerce_checkpoint(ID, String()) == ID
