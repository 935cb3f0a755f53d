"""The publish fast path takes a query parameter as it is only where the route's own
validation (pydantic's) would take it unchanged; anything else goes to the route."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from junctionbox.api import publish_fast_path
from junctionbox.api.publish_fast_path import PublishParameters, plain_parameters

ROUTE_BOOL = TypeAdapter(bool)
ROUTE_ORG = TypeAdapter(Annotated[int, Field(ge=1, le=2**63 - 1)])
ROUTE_STREAM = TypeAdapter(Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")])


def test_no_query_means_no_parameters() -> None:
    assert plain_parameters(b"") == PublishParameters(None, None, False)
    assert plain_parameters(b"other=1") == PublishParameters(None, None, False)


@pytest.mark.parametrize(
    "word",
    ["true", "True", "TRUE", "1", "yes", "On", "t", "Y", "false", "0", "No", "off", "f", "n"],
)
def test_boolean_words_read_as_pydantic_reads_them(word: str) -> None:
    parameters = plain_parameters(f"partial={word}".encode())
    assert parameters is not None
    assert parameters.partial is ROUTE_BOOL.validate_python(word)


@pytest.mark.parametrize("value", ["", "maybe", " true", "true ", "2", "\uff54rue", "tru"])
def test_other_boolean_spellings_go_to_the_route(value: str) -> None:
    assert plain_parameters(f"partial={value}".encode()) is None


@pytest.mark.parametrize("value", ["1", "100", "9999999", str(2**63 - 1)])
def test_plain_org_ids_read_as_pydantic_reads_them(value: str) -> None:
    parameters = plain_parameters(f"orgId={value}".encode())
    assert parameters is not None
    assert parameters.org_id == ROUTE_ORG.validate_python(value)


@pytest.mark.parametrize(
    "value", ["", "0", "007", "-1", "+1", " 1", "1_0", "\u0661", "x", str(2**63), "9" * 30]
)
def test_other_org_ids_go_to_the_route(value: str) -> None:
    assert plain_parameters(f"orgId={value}".encode()) is None


@pytest.mark.parametrize("name", ["orders", "a", "A.b_c-9", "s" * 100])
def test_valid_stream_names_are_taken(name: str) -> None:
    parameters = plain_parameters(f"stream={name}".encode())
    assert parameters is not None
    assert parameters.stream == ROUTE_STREAM.validate_python(name)


@pytest.mark.parametrize("name", ["", "-a", "a b", "a/b", "s" * 101, "abc\n", "é"])
def test_stream_names_the_route_refuses_go_to_it(name: str) -> None:
    with pytest.raises(ValidationError):
        ROUTE_STREAM.validate_python(name)
    assert plain_parameters(f"stream={quote(name)}".encode()) is None


def test_the_last_of_repeated_parameters_counts_as_for_the_route() -> None:
    assert plain_parameters(b"stream=bad%20one&stream=good&orgId=7") == PublishParameters(
        7, "good", False
    )


def test_a_query_read_again_gives_the_same_answer_and_few_are_kept() -> None:
    for query in (b"orgId=7&stream=s1", b"orgId=007", b"x" * 300):
        assert plain_parameters(query) == plain_parameters(query)
    assert plain_parameters(b"orgId=7&stream=s1") == PublishParameters(7, "s1", False)
    assert plain_parameters(b"orgId=007") is None
    for n in range(3000):
        assert plain_parameters(f"orgId={n + 1}".encode()) == PublishParameters(n + 1, None, False)
    assert len(publish_fast_path._READ) <= publish_fast_path._READ_MAX
    assert b"x" * 300 not in publish_fast_path._READ  # long queries are read, not kept
