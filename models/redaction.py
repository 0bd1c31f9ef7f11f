"""Secrets never reach a screen, a log or MLflow: redact connection strings.

Connection strings come in two shapes and both are parsed, not pattern-matched
on the happy path:

- URLs (``postgresql://user:pass@host/db``, ``http://user:pass@mlflow``,
  ``...?password=...``). The password is everything between the first ``:``
  of the user-info and the *last* ``@`` before the host, so a password that
  holds ``#``, ``?``, ``/`` or ``@`` is still found (``urllib`` would read
  ``#`` as a fragment and miss it).
- libpq keyword DSNs (``host=db user=me password='s3 cret'``), parsed with
  libpq's own quoting rules (single quotes, backslash escapes).

:func:`redact_text` applies both to free text such as an error message.
"""

from __future__ import annotations

import re

MASK = "***"

#: keys whose values are secrets, in a query string or a keyword DSN
SECRET_KEYS = ("password", "passwd", "pwd", "token", "secret", "api_key", "apikey", "access_token")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_KEYWORD = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
_SECRET_QUERY = re.compile(r"([?&;](?:" + "|".join(SECRET_KEYS) + r")=)[^&#\s]*", re.IGNORECASE)


def _redact_userinfo(rest: str) -> str:
    """``rest`` is what follows ``scheme://``. Mask the password of its user-info."""
    # The authority ends at the last '@' that comes before the path; a password
    # may itself contain '/', '?', '#' or '@', so look for the last '@' on the line.
    at = rest.rfind("@")
    if at < 0:
        return rest
    userinfo, host = rest[:at], rest[at:]
    user, sep, _password = userinfo.partition(":")
    if not sep:
        return rest
    return f"{user}:{MASK}{host}"


def redact_url(url: str | None) -> str:
    """The connection string with every password replaced by ``***``: safe to
    print, log or store. Works for URLs and libpq keyword DSNs; text without a
    secret comes back unchanged."""
    if not url:
        return "" if url is None else url
    text = str(url)
    match = _SCHEME.match(text.strip())
    if match:
        start = text.index(match.group(0)) + len(match.group(0))
        head, rest = text[:start], text[start:]
        # only the first line/word is the URL; keep whatever follows untouched
        end = len(rest)
        for stop in ("\n", " "):
            pos = rest.find(stop)
            if pos >= 0:
                end = min(end, pos)
        url_part, tail = rest[:end], rest[end:]
        redacted = head + _redact_userinfo(url_part)
        return _SECRET_QUERY.sub(rf"\1{MASK}", redacted) + tail
    if "=" in text:
        return _redact_keyword_dsn(text)
    return text


def _redact_keyword_dsn(text: str) -> str:
    """Mask secret values of a libpq ``key=value`` string (values may be
    single-quoted with backslash escapes, as libpq reads them)."""
    out: list[str] = []
    pos = 0
    for match in _KEYWORD.finditer(text):
        if match.start() < pos:
            continue  # inside a quoted value we already consumed
        key = match.group(1).lower()
        value_start = match.end()
        value_end = _value_end(text, value_start)
        if key in SECRET_KEYS:
            out.append(text[pos:value_start])
            out.append(MASK)
            pos = value_end
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    if start < len(text) and text[start] == "'":
        i = start + 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == "'":
                return i + 1
            i += 1
        return len(text)
    i = start
    while i < len(text) and not text[i].isspace():
        if text[i] == "\\":
            i += 1
        i += 1
    return min(i, len(text))


def redact_text(text: str, *secrets: str | None) -> str:
    """Free text (an error message, a log line) with every URL password,
    keyword-DSN password and each given secret value masked."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, MASK)
    # every URL in the text
    out = re.sub(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+", lambda m: redact_url(m.group(0)), out)
    if re.search(r"(?i)\b(?:" + "|".join(SECRET_KEYS) + r")\s*=", out):
        out = _redact_keyword_dsn(out)
    return out


def password_of(url: str | None) -> str | None:
    """The password inside a URL or keyword DSN, or None (used to scrub it
    from driver messages that quote it back)."""
    if not url:
        return None
    text = str(url).strip()
    match = _SCHEME.match(text)
    if match:
        rest = text[len(match.group(0)) :]
        at = rest.rfind("@")
        if at >= 0:
            user, sep, password = rest[:at].partition(":")
            if sep and password:
                return password
        query = re.search(r"(?i)[?&;]password=([^&#\s]*)", text)
        return query.group(1) if query else None
    for match in _KEYWORD.finditer(text):
        if match.group(1).lower() in SECRET_KEYS:
            value = text[match.end() : _value_end(text, match.end())]
            if value.startswith("'") and value.endswith("'"):
                value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
            return value or None
    return None
