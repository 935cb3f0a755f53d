from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, may_act_for
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import UnauthorizedError
from junctionbox.services.credentials import TokenSigner, generate_api_key, hash_api_key

ORG, UNIT, OTHER = Entity(1, None, "org"), Entity(2, 1, "unit"), Entity(3, None, "other")


def test_users_act_for_their_org_and_its_units_only() -> None:
    user = Principal(PrincipalKind.USER, "usr_1", Role.USER, org_id=1)
    key = Principal(PrincipalKind.API_KEY, "key_1", Role.API_KEY, org_id=1)
    admin = Principal(PrincipalKind.USER, "usr_2", Role.ADMIN, org_id=None)
    for caller in (user, key):
        assert may_act_for(caller, ORG)
        assert may_act_for(caller, UNIT)
        assert not may_act_for(caller, OTHER)
    assert all(may_act_for(admin, e) for e in (ORG, UNIT, OTHER))


def test_secret_box_round_trip_and_binding() -> None:
    box = SecretBox("k" * 40)
    sealed = box.seal("client-secret", associated="int_1")
    assert "client-secret" not in sealed
    assert box.open(sealed, associated="int_1") == "client-secret"
    assert box.seal("same") != box.seal("same")  # fresh nonce each time
    with pytest.raises(ValueError, match="does not open"):
        box.open(sealed, associated="int_2")
    with pytest.raises(ValueError, match="does not open"):
        SecretBox("j" * 40).open(sealed, associated="int_1")


def test_tokens_expire_and_pin_their_algorithm() -> None:
    signer = TokenSigner("k" * 40, timedelta(hours=1))
    now = datetime.now(UTC)
    issued = signer.issue("usr_1", now)
    assert signer.verify(issued.token).subject == "usr_1"
    expired = signer.issue("usr_1", now - timedelta(hours=2))
    with pytest.raises(UnauthorizedError, match="expired"):
        signer.verify(expired.token)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    with pytest.raises(UnauthorizedError):
        signer.verify(jwt.encode(claims, None, algorithm="none"))


def test_api_keys_are_random_and_hashed() -> None:
    first, second = generate_api_key(), generate_api_key()
    assert first.key != second.key
    assert first.key.startswith(first.prefix)
    assert first.key_hash == hash_api_key(first.key)
    assert first.key not in first.key_hash
