from __future__ import annotations

from junctionbox.domain.redaction import MASK, redact, redact_text


def test_values_under_secret_keys_are_masked_recursively() -> None:
    data = {
        "name": "erp",
        "outgoingAuthConfig": {"clientSecret": "s3cr3t", "password": "hunter2", "username": "bob"},
        "headers": [{"Authorization": "Bearer abc"}, {"X-Trace": "1"}],
        "apiKey": "k",
        "token": None,
    }
    masked = redact(data)
    assert masked["name"] == "erp"
    assert masked["outgoingAuthConfig"] == {
        "clientSecret": MASK,
        "password": MASK,
        "username": "bob",
    }
    assert masked["headers"] == [{"Authorization": MASK}, {"X-Trace": "1"}]
    assert masked["apiKey"] == MASK
    assert masked["token"] is None
    assert data["apiKey"] == "k"  # the input is untouched


def test_secret_shapes_are_masked_inside_text() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    text = (
        f"auth Bearer abcdefghijkl token {jwt} key jbk_abcdefghijklmnop "
        "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw url postgresql://jb:pa55word@db/jb"
    )
    out = redact_text(text)
    for secret in (
        "abcdefghijkl",
        jwt,
        "jbk_abcdefghijklmnop",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "pa55word",
    ):
        assert secret not in out
    assert "postgresql://jb:***@db/jb" in out
