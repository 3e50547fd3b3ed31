"""The text patterns the schema states match what DRF's trimming and NUL check refuse."""
import re
import sys

from hypothesis import given, strategies as st
from rest_framework import serializers

from profiles.common.fields import NOT_BLANK, WHITESPACE


def test_the_whitespace_class_is_exactly_what_str_strip_strips():
    spelled = re.compile(f"[{WHITESPACE}]")
    assert {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()} == \
        {c for c in map(chr, range(sys.maxunicode + 1)) if spelled.fullmatch(c)}


@given(st.text(alphabet=st.sampled_from(["\x00", "\x1d", "\u3000", " ", "\t", "a", "é"]), max_size=6))
def test_the_not_blank_pattern_accepts_exactly_what_a_drf_char_field_accepts(value):
    field = serializers.CharField()
    try:
        field.run_validation(value)
        accepted = True
    except serializers.ValidationError:
        accepted = False
    assert bool(NOT_BLANK.regex.search(value)) == accepted
