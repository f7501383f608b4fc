"""Storage URLs without their secrets: what a sweep may print about a database URL.

A URL's password (user info) and any query parameter that carries a secret (``password``,
``token``...) are masked after the URL is split as a URL, so a password holding a raw ``@`` or
``:`` does not leak its tail; a message from the database driver is scrubbed of the same
secrets before it is shown.

>>> masked_url("postgresql+psycopg2://me:p@ss:w%rd@db.host:5432/optuna?sslmode=require&password=x")
'postgresql+psycopg2://me:***@db.host:5432/optuna?sslmode=require&password=***'
>>> scrub("could not connect with password 'p@ss:w%rd'", "postgresql://me:p@ss:w%rd@h/db")
"could not connect with password '***'"
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["masked_url", "scrub", "url_secrets", "unencoded_userinfo"]

#: query parameters whose value is a secret (compared in lower case, as substrings)
SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "sslpassword")


def _split(url: str) -> tuple[str, str, str, str, str]:
    """(scheme, user info, host and port, path, query): the user info ends at the LAST ``@`` of
    the authority, so an unencoded ``@`` in a password stays in the user info."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url, "", ""
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    path, _, query = tail.partition("?")
    if not slash and "?" in host:
        host, _, query = host.partition("?")
    return scheme, userinfo if at else "", host, (slash + path) if slash else "", query


def unencoded_userinfo(url: str) -> bool:
    """True when the user name or password holds a raw ``@`` or a ``%`` that does not start a
    percent-escape: a URL parser then takes part of the password for the host.

    >>> unencoded_userinfo("postgresql://me:p@ss@h/db"), unencoded_userinfo("postgresql://me:p%40ss@h/db")
    (True, False)
    """
    import re
    userinfo = _split(url)[1]
    return "@" in userinfo or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo) is not None


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_KEYS)


def url_secrets(url: str) -> list[str]:
    """The secrets a URL holds (the password and secret query values), as written and decoded."""
    _, userinfo, _, _, query = _split(url)
    found = []
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for key, value in parse_qsl(query, keep_blank_values=True):
        if _is_secret(key):
            found.append(value)
    return sorted({s for value in found for s in (value, unquote(value)) if s}, key=len, reverse=True)


def masked_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``."""
    scheme, userinfo, host, path, query = _split(url)
    if not scheme:
        return url
    if userinfo:
        user = userinfo.split(":", 1)[0]
        userinfo = (user + ":***" if ":" in userinfo else user) + "@"
    if query:
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            parts.append(f"{key}=***" if eq and _is_secret(unquote(key)) else item)
        query = "?" + "&".join(parts)
    return f"{scheme}://{userinfo}{host}{path}{query}"


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with every secret of ``url`` replaced by ``***``."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text
