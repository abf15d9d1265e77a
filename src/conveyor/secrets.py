"""Values that came from the environment are secrets: they are masked wherever we print or store text.

One path: every secret is registered here (config `${NAME}` values, passwords in URLs such as
CONVEYOR_STATE_URL and CONVEYOR_DATABASE_URL, tokens), and every line of text and every JSON document leaves
the process through `mask` or `mask_json` (the CLI wraps stdout and stderr in `MaskingStream`). A secret is
also masked in the forms it takes once written down by Python, JSON, a shell or a URL: `repr` doubles a
backslash, JSON escapes quotes and non-ASCII, `shlex.quote` splits a single quote, URLs percent-encode.
"""

from __future__ import annotations

import json
import shlex
from typing import IO, Any
from urllib.parse import quote, quote_plus, unquote

_SECRETS: set[str] = set()
MASK = "********"


def register_secret(value: str) -> None:
    """Remember a value to mask, with every escaped form of it; very short values are not worth masking
    (and would mangle text)."""
    if len(value) < 4:
        return
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, safe=""), quote(value), quote_plus(value), shlex.quote(value),
             value.encode("unicode_escape").decode("ascii")}
    if "'" in value:  # shlex.quote writes 'a'"'"'b': what stands between its outer quotes is a form too
        forms.add(shlex.quote(value)[1:-1])
    _SECRETS.update(form for form in forms if len(form) >= 4)


def register_url(url: str) -> None:
    """Register the password of a URL (`scheme://user:password@host...`, also as a `password=` parameter) as
    it is written, even when the URL does not parse (an unencoded / or #, a port that is not a number)."""
    _scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return
    before_query = rest.split("?", 1)[0]
    userinfo, at, _ = (before_query if "@" in before_query else rest).rpartition("@")
    if at and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        register_secret(password)
        register_secret(unquote(password))
    for part in rest.split("?", 1)[1].split("&") if "?" in rest else []:
        key, _, value = part.partition("=")
        if key.lower() == "password" and value:
            register_secret(value)
            register_secret(unquote(value))


def mask(text: str) -> str:
    """The text with every registered secret replaced by a mask."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_json(document: Any) -> Any:
    """A JSON-ready document with every string in it (keys too) masked, however deep."""
    if isinstance(document, str):
        return mask(document)
    if isinstance(document, dict):
        return {mask_json(key) if isinstance(key, str) else key: mask_json(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [mask_json(item) for item in document]
    return document


class MaskingStream:
    """A text stream that masks what is written to it: the CLI's stdout and stderr, so that no print, warning
    or library message anywhere below it can show a secret."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text) if _SECRETS else text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding…: the real stream's
        return getattr(self._stream, name)
