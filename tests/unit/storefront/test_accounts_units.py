"""Account helpers without I/O: e-mail normalising, token digests, TOTP checks, the
failure window of the login rate limit."""

from __future__ import annotations

import hashlib

import pyotp
import pytest

from storefront.accounts import FailureWindow, normalise_email, token_digest, totp_step
from storefront.errors import InvalidInput


def test_normalise_email() -> None:
    assert normalise_email("  Ann@Example.ORG ") == "ann@example.org"
    for bad in ("", "ann", "ann@", "@example.org", "a b@example.org", "ann@example",
                "a@b@example.org", "x" * 250 + "@example.org"):
        with pytest.raises(InvalidInput, match="e-mail"):
            normalise_email(bad)


def test_token_digest_is_sha256_hex_and_never_the_token() -> None:
    digest = token_digest("secret-token")
    assert digest == hashlib.sha256(b"secret-token").hexdigest() and len(digest) == 64
    assert "secret" not in digest


def test_totp_codes() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = 1_800_000_015.0  # 15 s into step 60,000,000
    step = int(now // 30)
    assert totp_step(secret, totp.at(now), at=now) == step
    assert totp_step(secret, totp.at(now - 30), at=now) == step - 1  # clock drift, one step
    assert totp_step(secret, totp.at(now + 30), at=now) == step + 1
    far = {totp.at(now - 60), totp.at(now + 60)} - {totp.at(now + k) for k in (-30, 0, 30)}
    assert all(totp_step(secret, code, at=now) is None for code in far)
    assert totp_step(secret, None, at=now) is None
    assert totp_step(None, totp.at(now), at=now) is None
    for bad in ("12a456", "12345", "1234567", " 123456", ""):
        assert totp_step(secret, bad, at=now) is None


def test_failure_window_counts_per_key_and_forgets_old_failures() -> None:
    window = FailureWindow(window_s=60.0)
    for _ in range(3):
        window.add("acct:ann")
    window.add("ip:10.0.0.1")
    count, wait = window.count("acct:ann")
    assert count == 3 and 0 < wait <= 60
    assert window.count("acct:bob") == (0, 0.0)
    assert window.count("ip:10.0.0.1")[0] == 1
    expired = FailureWindow(window_s=0.0)
    expired.add("acct:ann")
    assert expired.count("acct:ann")[0] == 0
