"""Who is calling: users by a signed bearer JWT, operators by a bearer token.

A user token is HS256-signed with `SALEDAY_HTTP_JWT_SECRET`, with `sub` = the user id,
`iss` and `aud` fixed by the settings, and `exp` (plus `iat`); PyJWT checks all of them.
`saleday token --user U` issues one. The operator token is compared in constant time.
Each authenticated user then takes a token from their rate-limit bucket.

A token verified once is remembered (`VerifiedTokens`: per app, the `capacity` tokens
used most recently, each with its `exp` and `nbf`), so a client sending the same token
again is not verified again: HMAC verification and claim checks are about a tenth of a
request's CPU. The memory is keyed by the whole token string, so only that exact token
(header, claims and signature) is answered from it; `exp` (plus the leeway) and `nbf`
are checked against the clock on every request, and a token that failed verification is
never remembered.

The verification itself is PyJWT's, through a `PyJWT` of the app's own (`Verifier`) whose
HS256 is PyJWT's HMAC with the app's secret prepared once: PyJWT's `prepare_key` checks
the key anew on every decode (is it PEM, SSH or DER, is it JSON), about a quarter of a
verification's CPU (~6 of 24 us here), for a secret that does not change.
"""

from __future__ import annotations

import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.algorithms import HMACAlgorithm

from saleday.http.problems import ApiProblem
from saleday.http.settings import HttpSettings

USER_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")
bearer = HTTPBearer(auto_error=False, description="A user's JWT (`saleday token --user U`), "
                    "or the operator token on /v1/admin and /v1/views/metrics.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def issue_token(user: str, settings: HttpSettings, *, ttl_s: int | None = None,
                now_s: int | None = None) -> str:
    """A signed bearer token for `user`, valid for `ttl_s` seconds."""
    if not USER_ID.match(user):
        raise ValueError(f"user id {user!r}: 1-64 of letters, digits and . _ @ : -")
    now_s = int(time.time()) if now_s is None else now_s
    claims = {"sub": user, "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
              "iat": now_s, "exp": now_s + (ttl_s or settings.token_ttl_s)}
    return jwt.encode(claims, settings.secret("jwt_secret"), algorithm="HS256")


LEEWAY_S = 5
"""Seconds of clock skew allowed on `exp` (and `iat`, `nbf`)."""


def verify_token(token: str, settings: HttpSettings) -> str:
    """The user a token names; `ApiProblem` 401 when it is not valid now."""
    return Verifier(settings).claims(token)[0]


class _PreparedHMAC(HMACAlgorithm):
    """PyJWT's HS256 with one secret's key prepared (and so checked) once: that secret
    gives the prepared key, any other key is prepared as PyJWT always does."""

    def __init__(self, secret: str) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._secret = secret
        self._prepared = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        if isinstance(key, str) and key == self._secret:
            return self._prepared
        return super().prepare_key(key)


class Verifier:
    """PyJWT's verification of the app's user tokens (HS256 only, the app's secret, issuer
    and audience, `exp`, `sub`, `iss` and `aud` required, `LEEWAY_S` of skew)."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._secret = settings.secret("jwt_secret")
        self._jwt = jwt.PyJWT()
        jws = self._jwt._jws   # the PyJWS this PyJWT verifies signatures with
        jws.unregister_algorithm("HS256")
        jws.register_algorithm("HS256", _PreparedHMAC(self._secret))

    def claims(self, token: str) -> tuple[str, float, float | None]:
        """(user, exp, nbf or None) of a token valid now; `ApiProblem` 401 otherwise."""
        s = self.settings
        try:
            claims = self._jwt.decode(token, self._secret, algorithms=["HS256"],
                                      audience=s.jwt_audience, issuer=s.jwt_issuer,
                                      options={"require": ["exp", "sub", "iss", "aud"]},
                                      leeway=LEEWAY_S)
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"the token is not valid: {type(exc).__name__}") from None
        user = claims.get("sub")
        if not isinstance(user, str) or not USER_ID.match(user):
            raise unauthorized("the token's subject is not a user id")
        nbf = claims.get("nbf")
        return user, float(claims["exp"]), None if nbf is None else float(nbf)


class VerifiedTokens:
    """Tokens verified before: token -> (user, exp, nbf), for the `capacity` tokens used
    most recently.

    `user(token)` answers a remembered token that is valid now (its `exp` and `nbf`
    against the clock, with the leeway) without verifying its signature again; any other
    token is verified (`verify_token`'s checks and refusals) and remembered once it
    passes. The settings (secret, issuer, audience) are fixed per app, so per cache."""

    def __init__(self, settings: HttpSettings, capacity: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.capacity = capacity
        self.clock = clock
        self._verifier = Verifier(settings)
        self._seen: OrderedDict[str, tuple[str, float, float | None]] = OrderedDict()

    def user(self, token: str) -> str:
        known = self._seen.get(token)
        if known is not None:
            user, exp, nbf = known
            now = self.clock()
            if now >= exp + LEEWAY_S:   # PyJWT: expired when exp <= now - leeway
                del self._seen[token]
                raise unauthorized("the token has expired")
            if nbf is not None and now < nbf - LEEWAY_S:   # only a clock set back gets here
                raise unauthorized("the token is not valid: ImmatureSignatureError")
            self._seen.move_to_end(token)
            return user
        known = self._verifier.claims(token)
        self._seen[token] = known
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return known[0]

    def __len__(self) -> int:
        return len(self._seen)


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


async def current_user(request: Request, credentials: Credentials) -> str:
    """The authenticated user of a request, once within their rate limit."""
    api = request.app.state.api
    if credentials is None:
        raise unauthorized("send Authorization: Bearer <token>")
    user = api.tokens.user(credentials.credentials)
    wait_s = api.limiter.take(user)
    if wait_s > 0:
        raise ApiProblem(429, "rate_limited", "too many requests from this user",
                         headers={"Retry-After": str(max(1, int(wait_s + 0.999)))},
                         retry_after_s=round(wait_s, 3))
    return user


async def operator(request: Request, credentials: Credentials) -> None:
    """Passes only the operator token."""
    expected = request.app.state.api.settings.secret("operator_token").encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected):
        raise unauthorized("this route needs the operator token")


User = Annotated[str, Depends(current_user)]
Operator = Depends(operator)
