"""Text constraints of the API's input, as validators drf-spectacular states in the schema as patterns.

DRF refuses a NUL character in every text field and, after trimming, a blank one unless allowed; these say so.
"""
from django.core.validators import RegexValidator

# PostgreSQL text cannot hold NUL, so DRF refuses it everywhere.
NO_NUL = RegexValidator(r"^[^\x00]*$", "Null characters are not allowed.", code="null_characters_not_allowed")
# At least one character that is not whitespace: DRF trims the value first and refuses it when it is then empty.
NOT_BLANK = RegexValidator(r"^\s*[^\s\x00][^\x00]*$", "This field may not be blank.", code="blank")
