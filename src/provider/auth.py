"""Who may connect to a server endpoint: origin allow-list and token / JWT authentication.

Decided on the upgrade request, before the connection is accepted (HTTP 401 / 403), never
after. Sans-I/O apart from reading a JWKS file at configuration time: `authenticate(request)`
takes the upgrade request's path and headers and returns an `Identity` or raises `Refused`.

Where a token may come from (`AUTH_SOURCES`; browsers cannot set headers on WebSocket):
* `header`: `Authorization: Bearer <token>`;
* `subprotocol`: `Sec-WebSocket-Protocol: bearer, <token>` (the server answers `bearer`, or
  the frame-format subprotocol when the client offered one too);
* `query`: `?access_token=<token>` (ends up in proxy logs: allow it only when needed).
"""

from __future__ import annotations

import fnmatch
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from jwt import PyJWK, PyJWKSet

from .errors import ConfigError, Refused

BEARER_SUBPROTOCOL = "bearer"
SOURCES = ("header", "subprotocol", "query")


@dataclass(frozen=True)
class Identity:
    """The authenticated peer, as components see it (`ws.session.connected` → `identity`)."""

    subject: str
    claims: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """`{"sub": …, "claims": {…}}`."""
        return {"sub": self.subject, "claims": dict(self.claims)}


@dataclass(frozen=True)
class OriginPolicy:
    """`ALLOWED_ORIGINS` (exact, or `https://*.example.com`) and `ALLOW_NO_ORIGIN`."""

    allowed: tuple[str, ...] = ()
    allow_missing: bool = True

    def check(self, origin: str | None) -> None:
        """Raise `Refused(403)` unless `origin` may connect."""
        if not self.allowed:
            return
        if origin is None:
            if self.allow_missing:
                return
            raise Refused(403, "an Origin header is required")
        origin = origin.lower().rstrip("/")
        for pattern in self.allowed:
            if "*" in pattern:
                scheme, _, host_pattern = pattern.partition("://")
                o_scheme, _, o_host = origin.partition("://")
                if (
                    o_scheme == scheme
                    and fnmatch.fnmatchcase(o_host, host_pattern)
                    and (o_host.count(".") >= host_pattern.count("."))
                ):
                    return
            elif origin == pattern:
                return
        raise Refused(403, f"origin {origin!r} is not allowed")


@dataclass(frozen=True)
class AuthPolicy:
    """`AUTH=none|token|jwt` and its keys."""

    mode: str = "none"
    sources: tuple[str, ...] = ("header", "subprotocol")
    tokens: tuple[str, ...] = field(default=(), repr=False)
    jwt_keys: tuple[Any, ...] = field(default=(), repr=False)  # str secret or PyJWK
    jwt_algorithms: tuple[str, ...] = ()
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0

    def token_from(
        self, path: str, headers: Mapping[str, str], subprotocols: Sequence[str]
    ) -> str | None:
        """The presented token, from the first allowed source that has one."""
        for source in self.sources:
            if source == "header":
                value = headers.get("authorization") or ""
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
            elif source == "subprotocol":
                offered = [p.strip() for p in subprotocols]
                if BEARER_SUBPROTOCOL in offered:
                    index = offered.index(BEARER_SUBPROTOCOL)
                    if index + 1 < len(offered):
                        return offered[index + 1]
            elif source == "query":
                values = parse_qs(urlsplit(path).query).get("access_token")
                if values and values[0]:
                    return values[0]
        return None

    def authenticate(
        self, path: str, headers: Mapping[str, str], subprotocols: Sequence[str]
    ) -> Identity | None:
        """None when `AUTH=none`; else the identity, or `Refused(401)`."""
        if self.mode == "none":
            return None
        token = self.token_from(path, headers, subprotocols)
        if token is None:
            raise Refused(401, "authentication required: no token presented")
        if self.mode == "token":
            for index, accepted in enumerate(self.tokens):
                if hmac.compare_digest(token.encode(), accepted.encode()):
                    return Identity(f"token:{index}")
            raise Refused(401, "invalid token")
        return self._verify_jwt(token)

    def _verify_jwt(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refused(401, "invalid token: not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.jwt_algorithms:
            raise Refused(401, f"invalid token: algorithm {algorithm!r} not accepted")
        options = {"require": ["exp"], "verify_aud": self.audience is not None}
        last_error = "no key matched"
        family = _ALGORITHM_FAMILIES.get(str(algorithm))
        for key in self.jwt_keys:
            if _key_family(key) != family:
                continue  # e.g. an HS256 token and an RSA key: never tried (nor a crash)
            if isinstance(key, PyJWK):
                kid = header.get("kid")
                if kid is not None and key.key_id not in (None, kid):
                    continue
                key_material: Any = key.key
            else:
                key_material = key
            try:
                claims = jwt.decode(
                    token,
                    key_material,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=options,  # type: ignore[arg-type]
                )
            except jwt.InvalidSignatureError:
                last_error = "bad signature"
                continue
            except jwt.InvalidKeyError:  # e.g. another curve of the same key kind: next key
                last_error = "no key of this kind matched"
                continue
            except jwt.ExpiredSignatureError:
                raise Refused(401, "invalid token: expired") from None
            except jwt.ImmatureSignatureError:
                raise Refused(401, "invalid token: not valid yet (nbf)") from None
            except jwt.InvalidAudienceError:
                raise Refused(401, "invalid token: wrong audience") from None
            except jwt.InvalidIssuerError:
                raise Refused(401, "invalid token: wrong issuer") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Refused(401, f"invalid token: missing claim {exc.claim!r}") from None
            except jwt.PyJWTError as exc:
                raise Refused(401, f"invalid token: {exc}") from None
            except Exception as exc:  # a key/library mismatch must not become a 500
                last_error = f"cannot be verified ({type(exc).__name__})"
                continue
            subject = claims.get("sub")
            return Identity(str(subject) if subject is not None else "", claims)
        raise Refused(401, f"invalid token: {last_error}")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def origin_policy(config: Mapping[str, str]) -> OriginPolicy:
    """`ALLOWED_ORIGINS`, `ALLOW_NO_ORIGIN` (validated)."""
    allowed = tuple(o.lower().rstrip("/") for o in _split(config.get("ALLOWED_ORIGINS")))
    for origin in allowed:
        if "://" not in origin or (
            "*" in origin and not origin.split("://", 1)[1].startswith("*.")
        ):
            raise ConfigError(
                "ALLOWED_ORIGINS",
                origin,
                "origins like https://app.example.com or https://*.example.com",
            )
    missing = (config.get("ALLOW_NO_ORIGIN") or "true").strip().lower()
    if missing not in ("true", "false"):
        raise ConfigError("ALLOW_NO_ORIGIN", missing, "true or false")
    return OriginPolicy(allowed, missing == "true")


def auth_policy(config: Mapping[str, str]) -> AuthPolicy:
    """`AUTH` and its keys (validated; keys are loaded now, so a bad key fails the link)."""
    mode = (config.get("AUTH") or "none").strip().lower()
    if mode not in ("none", "token", "jwt"):
        raise ConfigError("AUTH", mode, "one of none, token, jwt")
    sources = _split(config.get("AUTH_SOURCES")) or ("header", "subprotocol")
    for source in sources:
        if source not in SOURCES:
            raise ConfigError("AUTH_SOURCES", source, "a list of header, subprotocol, query")
    leeway_text = config.get("JWT_LEEWAY_SEC") or "30"
    try:
        leeway = float(leeway_text)
        if not 0 <= leeway <= 3600:
            raise ValueError(leeway_text)
    except ValueError:
        raise ConfigError("JWT_LEEWAY_SEC", leeway_text, "seconds, 0-3600") from None
    if mode == "none":
        return AuthPolicy()
    if mode == "token":
        tokens = _split(config.get("AUTH_TOKENS"))
        if not tokens:
            raise ConfigError("AUTH_TOKENS", "", "at least one token with AUTH=token")
        return AuthPolicy("token", sources, tokens=tokens, leeway=leeway)
    return _jwt_policy(config, sources, leeway)


def _jwt_policy(config: Mapping[str, str], sources: tuple[str, ...], leeway: float) -> AuthPolicy:
    secret, public = config.get("JWT_SECRET"), config.get("JWT_PUBLIC_KEY")
    jwks_file = config.get("JWT_JWKS_FILE")
    keys: list[Any] = []
    default_algorithms: list[str] = []
    if secret:
        keys.append(secret)
        default_algorithms = ["HS256"]
    if public:
        try:
            jwk = PyJWK.from_dict(_pem_to_jwk(public))
        except Exception as exc:
            raise ConfigError("JWT_PUBLIC_KEY", "<pem>", f"a PEM public key ({exc})") from None
        keys.append(jwk)
        default_algorithms = [jwk.algorithm_name] if jwk.algorithm_name else []
    if jwks_file:
        try:
            with open(jwks_file, encoding="utf-8") as handle:
                jwks = PyJWKSet.from_dict(json.load(handle))
        except Exception as exc:
            raise ConfigError("JWT_JWKS_FILE", jwks_file, f"a readable JWKS file ({exc})") from None
        keys.extend(jwks.keys)
        default_algorithms += [k.algorithm_name for k in jwks.keys if k.algorithm_name]
    if not keys:
        raise ConfigError("AUTH", "jwt", "needs JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_FILE")
    algorithms = _split(config.get("JWT_ALGORITHMS")) or tuple(dict.fromkeys(default_algorithms))
    if not algorithms or any(a.lower() == "none" for a in algorithms):
        raise ConfigError("JWT_ALGORITHMS", ",".join(algorithms), "e.g. HS256, RS256, ES256, EdDSA")
    have = {_key_family(key) for key in keys}
    for algorithm in algorithms:
        family = _ALGORITHM_FAMILIES.get(algorithm)
        if family is None:
            raise ConfigError(
                "JWT_ALGORITHMS", algorithm, f"one of {', '.join(_ALGORITHM_FAMILIES)}"
            )
        if family not in have:
            raise ConfigError(
                "JWT_ALGORITHMS",
                algorithm,
                f"an algorithm the configured keys can verify ({algorithm} needs "
                f"{_FAMILY_NEEDS[family]})",
            )
    return AuthPolicy(
        "jwt",
        sources,
        jwt_keys=tuple(keys),
        jwt_algorithms=algorithms,
        audience=config.get("JWT_AUDIENCE") or None,
        issuer=config.get("JWT_ISSUER") or None,
        leeway=leeway,
    )


#: JWT algorithm -> the kind of key that verifies it (a JWK's `kty`; `oct` = a shared secret).
_ALGORITHM_FAMILIES = {
    **{f"HS{n}": "oct" for n in (256, 384, 512)},
    **{f"RS{n}": "RSA" for n in (256, 384, 512)},
    **{f"PS{n}": "RSA" for n in (256, 384, 512)},
    **{f"ES{n}": "EC" for n in (256, 384, 512)},
    "ES256K": "EC",
    "EdDSA": "OKP",
}
_FAMILY_NEEDS = {
    "oct": "JWT_SECRET or a symmetric key in JWT_JWKS_FILE",
    "RSA": "an RSA key in JWT_PUBLIC_KEY or JWT_JWKS_FILE",
    "EC": "an EC key in JWT_PUBLIC_KEY or JWT_JWKS_FILE",
    "OKP": "an Ed25519 key in JWT_PUBLIC_KEY or JWT_JWKS_FILE",
}


def _key_family(key: Any) -> str:
    """The kind of a configured key: `oct` for JWT_SECRET, else the JWK's key type."""
    return "oct" if isinstance(key, str) else str(key.key_type)


def _pem_to_jwk(pem: str) -> dict[str, Any]:
    """A PEM public key as a JWK dict (with the algorithm its key type implies)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(
            key.curve.name, "ES256"
        )
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "EdDSA"
    else:
        raise ValueError("unsupported key type")
    jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key))
    jwk["alg"] = algorithm
    return jwk
