"""The parts that keep the door: callback signatures, tokens, the rate limit, the secrets."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time

import jwt
import pytest

from saleday.http import webhook
from saleday.http.auth import LEEWAY_S, VerifiedTokens, issue_token, verify_token
from saleday.http.idempotency import EdgeKeys, scoped_id
from saleday.http.problems import ApiProblem
from saleday.http.ratelimit import TokenBucket
from saleday.http.settings import HttpSettings, MissingSecrets, with_secrets

SECRET = "whsec_test_secret_of_at_least_32_chars"
BODY = b'{"id":"evt-1","type":"payment.succeeded","order_id":"o-1","payment_id":"p-1","amount_cents":1500}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    """The documented worked example: v1 is hex HMAC-SHA256 of "<t>." + body with the secret."""
    header = webhook.sign(SECRET, 1_700_000_000, BODY)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert expected == "f6d0e2c1b72731154dffb8aabaece9f41f3c657d9280077e57bdda3b47f6927b"  # docs/API.md
    assert webhook.verify(header, BODY, SECRET, now_s=1_700_000_100, tolerance_s=300) == \
        (1_700_000_000, expected)


@pytest.mark.parametrize("header, body, now, why", [
    (None, BODY, 1_700_000_000, "no Saleday-Signature"),
    ("garbage", BODY, 1_700_000_000, "must read"),
    (webhook.sign(SECRET, 1_700_000_000, BODY), BODY + b" ", 1_700_000_000, "does not match"),
    (webhook.sign("another-secret-another-secret-xx", 1_700_000_000, BODY), BODY, 1_700_000_000,
     "does not match"),
    (webhook.sign(SECRET, 1_700_000_000, BODY), BODY, 1_700_000_301, "more than 300 s"),
    (webhook.sign(SECRET, 1_700_000_000, BODY).replace("t=1700000000", "t=1700000001"), BODY,
     1_700_000_000, "does not match"),
])
def test_a_bad_signature_is_refused_saying_why(header, body, now, why):
    """A missing, malformed, forged, tampered, re-timed or stale signature is refused."""
    with pytest.raises(webhook.BadSignature, match=why):
        webhook.verify(header, body, SECRET, now_s=now, tolerance_s=300)


def test_any_of_several_signatures_may_match_while_a_secret_rotates():
    """A header with one v1 per secret passes when any of them matches."""
    good = webhook.sign(SECRET, 5, BODY)
    header = f"t=5,v1={'0' * 64},{good.split(',')[1]}"
    assert webhook.verify(header, BODY, SECRET, now_s=5, tolerance_s=1)[0] == 5


def test_a_token_names_its_user_until_it_expires():
    """A token issued for a user verifies to that user, and not once it has expired."""
    settings = HttpSettings(jwt_secret="s" * 32)
    assert verify_token(issue_token("u-1", settings), settings) == "u-1"
    with pytest.raises(ApiProblem, match="expired"):
        verify_token(issue_token("u-1", settings, ttl_s=1, now_s=1000), settings)
    with pytest.raises(ValueError):
        issue_token("not a user", settings)


def test_a_remembered_token_still_expires_and_a_bad_one_is_never_remembered():
    """Given tokens answered from memory, a token is its user until its exp (plus the
    leeway) and 401 expired after; a forged or foreign token is refused every time; and
    at most `capacity` tokens are remembered."""
    settings = HttpSettings(jwt_secret="s" * 32)
    now = [time.time()]
    tokens = VerifiedTokens(settings, capacity=3, clock=lambda: now[0])
    token = issue_token("u-1", settings, ttl_s=60, now_s=int(now[0]))
    assert tokens.user(token) == tokens.user(token) == "u-1"
    now[0] += 60 + LEEWAY_S + 1
    with pytest.raises(ApiProblem, match="expired"):
        tokens.user(token)
    forged = issue_token("u-2", HttpSettings(jwt_secret="x" * 32))
    for _ in range(2):
        with pytest.raises(ApiProblem, match="not valid"):
            tokens.user(forged)
    for i in range(5):
        assert tokens.user(issue_token(f"u-{i}", settings)) == f"u-{i}"
    assert len(tokens) == 3


def _resigned(token: str, signature: bytes) -> str:
    """`token` with its header and claims kept and its signature replaced."""
    head, claims, _ = token.split(".")
    return f"{head}.{claims}.{jwt.utils.base64url_encode(signature).decode()}"


def test_a_forged_token_is_refused_after_the_genuine_one_is_remembered():
    """Given a user's genuine token remembered, when tokens carrying the same claims come
    with another signature (one byte flipped, the wrong secret's, none at all, or the
    genuine one re-encoded with another algorithm), then each is verified and refused
    401, every time, and none of them is remembered."""
    settings = HttpSettings(jwt_secret="s" * 32)
    tokens = VerifiedTokens(settings)
    genuine = issue_token("u-1", settings, ttl_s=600)
    assert tokens.user(genuine) == "u-1"
    head, claims, sig = genuine.split(".")
    raw = jwt.utils.base64url_decode(sig)
    flipped = _resigned(genuine, bytes([raw[0] ^ 1]) + raw[1:])
    other_secret = jwt.decode(genuine, options={"verify_signature": False})
    wrong_key = jwt.encode(other_secret, "x" * 32, algorithm="HS256")
    unsigned = f"{head}.{claims}."
    alg_none = jwt.encode(other_secret, None, algorithm="none")
    hs512 = jwt.encode(other_secret, "s" * 64, algorithm="HS512")
    for forged in (flipped, wrong_key, unsigned, alg_none, hs512, genuine + "x"):
        for _ in range(2):
            with pytest.raises(ApiProblem) as refused:
                tokens.user(forged)
            assert refused.value.status == 401
    assert len(tokens) == 1
    assert tokens.user(genuine) == "u-1"


def test_a_remembered_token_is_refused_once_expired_and_before_its_nbf():
    """Given a remembered token, when the clock passes its exp plus the leeway, then it is
    401 expired (and forgotten); and a remembered token whose nbf lies ahead of the clock
    (a clock set back) is 401 too, while a token not yet valid is never remembered."""
    settings = HttpSettings(jwt_secret="s" * 32)
    now = [time.time()]
    tokens = VerifiedTokens(settings, clock=lambda: now[0])
    start = int(now[0])
    claims = {"sub": "u-1", "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
              "iat": start, "nbf": start, "exp": start + 60}
    token = jwt.encode(claims, "s" * 32, algorithm="HS256")
    assert tokens.user(token) == "u-1"
    now[0] = start - LEEWAY_S - 10
    with pytest.raises(ApiProblem, match="ImmatureSignature"):
        tokens.user(token)
    now[0] = start + 60 + LEEWAY_S
    with pytest.raises(ApiProblem, match="expired"):
        tokens.user(token)
    assert len(tokens) == 0
    later = jwt.encode({**claims, "nbf": int(time.time()) + 600}, "s" * 32, algorithm="HS256")
    with pytest.raises(ApiProblem, match="ImmatureSignature"):
        tokens.user(later)
    assert len(tokens) == 0


def test_the_token_memory_keeps_the_tokens_used_most_recently():
    """Given a full token memory, when a remembered token is used again and a new one
    arrives, then the token used least recently is the one forgotten."""
    settings = HttpSettings(jwt_secret="s" * 32)
    tokens = VerifiedTokens(settings, capacity=2)
    a, b, c = (issue_token(u, settings) for u in ("u-a", "u-b", "u-c"))
    tokens.user(a), tokens.user(b), tokens.user(a), tokens.user(c)
    assert set(tokens._seen) == {a, c}


def test_the_bucket_allows_a_burst_then_the_rate():
    """A bucket lets `burst` requests through at once, then one per 1/rate seconds, and says
    how long to wait."""
    t = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: t[0])
    assert [bucket.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("u") == pytest.approx(0.5)
    t[0] = 0.5
    assert bucket.take("u") == 0.0
    assert bucket.take("v") == 0.0


def test_keys_are_scoped_and_conflicts_caught():
    """Two users' keys give different ids; a key seen with another body is a conflict."""
    assert scoped_id("a", "k") != scoped_id("b", "k")
    keys = EdgeKeys(capacity=2)
    keys.check("a", "orders", "k", {"x": 1})
    keys.check("a", "orders", "k", {"x": 1})
    keys.check("b", "orders", "k", {"x": 2})
    with pytest.raises(ApiProblem) as raised:
        keys.check("a", "orders", "k", {"x": 2})
    assert raised.value.status == 409


def test_no_secrets_means_no_start_unless_dev_secrets_are_asked_for(tmp_path):
    """Without secrets the settings refuse; with `dev` random ones are written to a 0600 file
    and read back the next time."""
    with pytest.raises(MissingSecrets, match="SALEDAY_HTTP_JWT_SECRET"):
        with_secrets(HttpSettings(), data_dir=tmp_path)
    first, path = with_secrets(HttpSettings(), data_dir=tmp_path, dev=True)
    assert path == tmp_path / "http-secrets.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not first.missing_secrets()
    again, _ = with_secrets(HttpSettings(), data_dir=tmp_path, dev=True)
    assert again.secret("jwt_secret") == first.secret("jwt_secret")
    assert first.secret("jwt_secret") not in repr(first)


def test_short_secrets_are_refused():
    """A secret under 32 characters is refused."""
    with pytest.raises(ValueError, match="at least 32"):
        HttpSettings(jwt_secret="short")
