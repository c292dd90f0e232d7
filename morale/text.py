"""The one rule for text that people, files and API clients send in: no control characters.

PostgreSQL refuses a NUL in text (the request fails with a 500) and SQLite stores it; the
other control characters (C0, DEL, C1) and lone surrogates (JSON's ``"\\ud800"``, which no
database can encode) are no text anyone means to store either. ``text_clean`` refuses
them with a message that names the character and where it is, and normalises the
whitespace controls where they make sense: on one line, tabs and line breaks become
spaces; in multi-line text, line breaks become ``\\n`` and tabs stay.

Every path that takes text calls this (annotation's services and import rows, the crowd
entry, the API's serializers and filters), so the rule and its message live here once.
``CONTROL_FREE_PATTERN`` says the same thing to the API schema; ``text_escaped`` makes a
refused value safe to echo in a stored error message. Imports no app.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# Whitespace controls that typed or pasted text carries: normalised, never refused.
LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x85]")
# Every other character of Unicode category Cc (C0 controls, DEL, C1 controls) and any
# surrogate (category Cs: only a lone one can reach a Python str).
_REFUSED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")
_REFUSED_ON_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # after normalising
# For the OpenAPI schema (ECMA-262 regex): an API string parameter holds no control
# character at all (API clients send no tabs or line breaks in these values).
CONTROL_FREE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
_NAMES = {"\x00": "NUL", "\x07": "BEL", "\x08": "BACKSPACE", "\x1b": "ESCAPE", "\x7f": "DELETE"}


def _describe(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        kind = "a lone surrogate"
    else:
        kind = _NAMES.get(char, "a control character")
    return f"U+{ord(char):04X} ({kind})"


def text_clean(value: str, *, field: str = "The text", multiline: bool = False) -> str:
    """``value`` with its whitespace controls normalised; ValidationError (code
    ``control_character``) if it holds any other control character or a lone surrogate.

    One line (``multiline=False``): CR LF, LF, CR, VT, FF, NEL and tabs become one space
    each. Multi-line: those line breaks become ``\\n``; tabs stay. Nothing else changes
    (stripping and length limits are the caller's rules). ``field`` starts the message.
    """
    if multiline:
        value = LINE_BREAKS.sub("\n", value)
        found = _REFUSED.search(value)
    else:
        value = LINE_BREAKS.sub(" ", value).replace("\t", " ")
        found = _REFUSED_ON_ONE_LINE.search(value)
    _refuse(found, field)
    return value


def text_check(value: str, *, field: str = "The text") -> None:
    """Refuse (ValidationError) a value holding any control character, tabs and line
    breaks included: for values that never carry whitespace controls (ids, API query
    parameters), where normalising would only change what was asked for."""
    _refuse(_REFUSED_ON_ONE_LINE.search(value), field)


def _refuse(found: re.Match | None, field: str) -> None:
    if found:
        raise ValidationError(
            f"{field} contains a control character, {_describe(found.group())}, at position "
            f"{found.start() + 1}; remove it and try again.",
            code="control_character",
        )


def text_escaped(value: str) -> str:
    """``value`` with each control character and lone surrogate written as ``\\uXXXX``:
    for echoing what was refused (an unknown JSON key, say) in a message that is stored."""
    return _REFUSED_ON_ONE_LINE.sub(lambda found: f"\\u{ord(found.group()):04x}", value)
