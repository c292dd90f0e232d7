"""morale.text: the one rule for incoming text (no control characters; whitespace controls
normalised), checked against hand-written cases and against Unicode's own categories."""

import re
import unicodedata

import pytest
from django.core.exceptions import ValidationError

from morale.text import CONTROL_FREE_PATTERN, text_check, text_clean, text_escaped


@pytest.mark.parametrize(
    "value, shown, position",
    [("a\x00b", "U+0000 (NUL)", 2), ("\x1b[31m", "U+001B (ESCAPE)", 1), ("ok\x7f", "U+007F (DELETE)", 3),
     ("x\x9b", "U+009B (a control character)", 2), ("lone \ud800", "U+D800 (a lone surrogate)", 6)],
)
def test_control_characters_are_refused_with_the_character_and_where_it_is(value, shown, position):
    with pytest.raises(ValidationError) as refused:
        text_clean(value, field="The scenario")
    assert refused.value.messages == [
        f"The scenario contains a control character, {shown}, at position {position}; remove it and try again."
    ]
    assert refused.value.error_list[0].code == "control_character"


def test_on_one_line_tabs_and_line_breaks_become_spaces():
    assert text_clean("a\tb\r\nc\rd\ne\x0bf\x0cg\x85h") == "a b c d e f g h"


def test_multi_line_text_keeps_tabs_and_one_kind_of_line_break():
    assert text_clean("a\tb\r\nc\rd\x85e", multiline=True) == "a\tb\nc\nd\ne"
    with pytest.raises(ValidationError):
        text_clean("a\nb\x00", multiline=True)


def test_ordinary_text_of_any_script_passes_unchanged():
    text = "Ein Kind überquert die Straße — 子供が道を渡る 🚸 « ça » שלום"
    assert text_clean(text) == text and text_clean(text, multiline=True) == text


def test_text_check_refuses_even_tabs_and_changes_nothing():
    text_check("plain value")
    for value in ("a\tb", "a\nb", "a\x00b"):
        with pytest.raises(ValidationError):
            text_check(value, field="external_id")


def test_every_character_the_rule_refuses_is_a_control_or_surrogate_and_the_schema_pattern_agrees():
    """Against Unicode's categories: refused exactly when Cc or Cs (after normalising the
    whitespace controls); the schema's pattern refuses every Cc."""
    pattern = re.compile(CONTROL_FREE_PATTERN)  # ECMA-262 and Python read \uXXXX alike
    for code in [*range(0, 0x250), *range(0xD7F0, 0xE010), 0xFEFF, 0xFFFD, 0x1F600]:
        char = chr(code)
        category = unicodedata.category(char)
        try:
            text_clean(f"a{char}b")
            refused = False
        except ValidationError:
            refused = True
        whitespace_control = char in "\t\n\v\f\r\x85"
        assert refused == (category in ("Cc", "Cs") and not whitespace_control), (hex(code), category)
        if category == "Cc":
            assert not pattern.match(f"a{char}b"), hex(code)
        elif category != "Cs":
            assert pattern.match(f"a{char}b"), hex(code)


def test_text_escaped_writes_what_was_refused_as_escapes():
    assert text_escaped("ba\x00d\ud800 ok") == "ba\\u0000d\\ud800 ok"
    assert text_escaped("plain") == "plain"
