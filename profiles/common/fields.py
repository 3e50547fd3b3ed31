"""Text constraints of the API's input, as validators drf-spectacular states in the schema as patterns.

DRF refuses a NUL character in every text field and, after trimming, a blank one unless allowed; these say so.
"""
from django.core.validators import RegexValidator

# PostgreSQL text cannot hold NUL, so DRF refuses it everywhere.
NO_NUL = RegexValidator(r"^[^\x00]*$", "Null characters are not allowed.", code="null_characters_not_allowed")
# What str.strip() strips (str.isspace()), spelled out: a pattern's \s differs between Python, ECMA and the
# generators that read the schema (the controls \x1c-\x1f above all).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# At least one character that is not whitespace: DRF trims the value first and refuses it when it is then empty.
NOT_BLANK = RegexValidator(rf"^[{WHITESPACE}]*[^{WHITESPACE}\x00][^\x00]*$", "This field may not be blank.",
                           code="blank")
