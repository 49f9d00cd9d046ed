"""Signed storage URLs, in the style of Google Cloud Storage V4 signing.

X hands out upload and download URLs on Google Cloud Storage that carry their own credentials
in the query string (``X-Goog-Algorithm``, ``X-Goog-Credential``, ``X-Goog-Date``,
``X-Goog-Expires``, ``X-Goog-SignedHeaders``, ``X-Goog-Signature``). The emulator issues URLs of
the same shape on its own host and verifies them on every request, so a client that alters a
URL, uses the wrong method, omits or changes the signed ``Content-Type``, or waits too long gets
the same refusals as from GCS. The signature is an HMAC-SHA256 (``GOOG4-HMAC-SHA256``) with a
random per-emulator secret, over this canonical request::

    METHOD \\n PATH \\n CANONICAL_QUERY \\n CANONICAL_HEADERS \\n SIGNED_HEADERS \\n UNSIGNED-PAYLOAD

``CANONICAL_QUERY``: every query parameter except ``X-Goog-Signature``, percent-encoded
(RFC 3986 unreserved characters kept) and sorted; ``CANONICAL_HEADERS``: ``name:value\\n`` for
each signed header (lower-case name, trimmed value). The string signed is
``GOOG4-HMAC-SHA256 \\n X-Goog-Date \\n scope \\n sha256hex(canonical request)``.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping

from .timefmt import goog_datetime, goog_day, parse_goog_datetime

__all__ = ["ALGORITHM", "SignatureMismatch", "SignatureExpired", "UrlSigner"]

ALGORITHM = "GOOG4-HMAC-SHA256"
MAX_EXPIRES = 604800  # GCS V4: at most 7 days
_REQUIRED = (
    "X-Goog-Algorithm",
    "X-Goog-Credential",
    "X-Goog-Date",
    "X-Goog-Expires",
    "X-Goog-SignedHeaders",
    "X-Goog-Signature",
)


class SignatureMismatch(Exception):
    """The request does not carry a valid signature (GCS: 403 SignatureDoesNotMatch)."""


class SignatureExpired(Exception):
    """The signature was valid but has expired (GCS: 400 ExpiredToken)."""

    def __init__(self, expired_at: int):
        super().__init__(expired_at)
        self.expired_at = expired_at


def _enc(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))


def _normalize_header_value(value: str) -> str:
    return " ".join(value.split())


class UrlSigner:
    """Issues and verifies signed URLs for one emulator (one secret, one ``host:port``)."""

    def __init__(self, secret: bytes, host: str, account: str = "emulator"):
        self._secret = secret
        self.host = host
        self.account = account

    def _signature(
        self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> str:
        names = sorted(headers)
        canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in names)
        canonical_request = "\n".join(
            [
                method,
                path,
                _canonical_query(params),
                canonical_headers,
                ";".join(names),
                "UNSIGNED-PAYLOAD",
            ]
        )
        scope = params["X-Goog-Credential"].split("/", 1)[-1]
        to_sign = "\n".join(
            [
                ALGORITHM,
                params["X-Goog-Date"],
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            ]
        )
        return hmac.new(self._secret, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    def sign(
        self, method: str, path: str, date: int, expires: int, headers: Mapping[str, str] | None = None
    ) -> str:
        """The query string (without ``?``) that authorizes ``method`` on ``path`` from Unix
        second ``date`` for ``expires`` seconds, with ``headers`` (name -> exact value) signed
        in addition to ``host``."""
        signed = {k.lower(): _normalize_header_value(v) for k, v in (headers or {}).items()}
        signed["host"] = self.host
        params = {
            "X-Goog-Algorithm": ALGORITHM,
            "X-Goog-Credential": f"{self.account}/{goog_day(date)}/auto/storage/goog4_request",
            "X-Goog-Date": goog_datetime(date),
            "X-Goog-Expires": str(int(expires)),
            "X-Goog-SignedHeaders": ";".join(sorted(signed)),
        }
        signature = self._signature(method, path, params, signed)
        return _canonical_query(params) + "&X-Goog-Signature=" + signature

    def verify(
        self, method: str, path: str, raw_query: str, header: Callable[[str], str | None], now: float
    ) -> int:
        """Check a request against its signature; return the Unix second at which it expires.
        The URL is valid from ``X-Goog-Date`` through ``X-Goog-Date + X-Goog-Expires``
        inclusive, i.e. for exactly ``X-Goog-Expires`` seconds.

        ``header(name)`` returns a request header (or None). Raises ``SignatureMismatch`` for
        anything forged, altered or missing, ``SignatureExpired`` when the time is up.
        """
        params: dict[str, str] = {}
        for part in raw_query.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            key, value = urllib.parse.unquote(key), urllib.parse.unquote(value)
            if key in params:
                raise SignatureMismatch(f"The query parameter {key} is repeated.")
            params[key] = value
        missing = [k for k in _REQUIRED if k not in params]
        if missing:
            raise SignatureMismatch(f"The query parameter {missing[0]} is missing.")
        if params["X-Goog-Algorithm"] != ALGORITHM:
            raise SignatureMismatch(f"X-Goog-Algorithm must be {ALGORITHM}.")
        signature = params.pop("X-Goog-Signature")
        names = params["X-Goog-SignedHeaders"].split(";")
        if "host" not in names or names != sorted(set(names)):
            raise SignatureMismatch(
                "X-Goog-SignedHeaders must list host and be sorted, lower-case and without repeats."
            )
        try:
            date = parse_goog_datetime(params["X-Goog-Date"])
            expires = int(params["X-Goog-Expires"])
        except ValueError:
            raise SignatureMismatch("X-Goog-Date or X-Goog-Expires is malformed.") from None
        if not 1 <= expires <= MAX_EXPIRES:
            raise SignatureMismatch(f"X-Goog-Expires must be between 1 and {MAX_EXPIRES}.")
        credential = params["X-Goog-Credential"].split("/")
        if len(credential) != 5 or credential[1] != goog_day(date):
            raise SignatureMismatch("X-Goog-Credential does not match X-Goog-Date.")
        headers = {name: _normalize_header_value(header(name) or "") for name in names}
        expected = self._signature(method, path, params, headers)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise SignatureMismatch(
                "The signature does not match the method, path, query "
                "string and signed headers of the request."
            )
        if now > date + expires:
            raise SignatureExpired(date + expires)
        return date + expires
