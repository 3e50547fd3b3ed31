"""The web screens' query forms: the profile list's filters and sorting, the dashboard's date range.

Both read GET parameters that anyone can type into an address bar, so every value is validated here and a bad
one becomes a message on the screen, never an error page.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django import forms
from django.utils import timezone

from consent import selectors as consent_selectors

# A year and a day: a year-on-year view fits, and the per-day charts stay readable.
DASHBOARD_MAX_DAYS = 366
DASHBOARD_PRESETS = (7, 30, 90)
DASHBOARD_DEFAULT_DAYS = 30

PROFILE_SORTS = {
    "-last_seen": "Last seen, newest first",
    "last_seen": "Last seen, oldest first",
    "-events": "Most events",
    "events": "Fewest events",
    "-value": "Highest lifetime value",
    "value": "Lowest lifetime value",
    "-created": "Created, newest first",
    "created": "Created, oldest first",
}
CONSENT_STATES = [("", "Any"), ("allowed", "Allowed"), ("denied", "Denied")]


def _text(label: str, max_length: int) -> forms.CharField:
    # A form's CharField refuses NUL (which PostgreSQL cannot compare): bad input, reported, never a failure.
    return forms.CharField(label=label, required=False, max_length=max_length, strip=True)


class ProfileFilterForm(forms.Form):
    q = _text("Search", 200)
    trait = _text("Trait", 200)
    trait_value = _text("Trait value", 500)
    purpose = forms.ChoiceField(label="Consent purpose", required=False)
    consent = forms.ChoiceField(label="Consent", required=False, choices=CONSENT_STATES)
    seen_from = forms.DateField(label="Last seen from", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    seen_to = forms.DateField(label="Last seen to", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(label="Sort by", required=False, choices=list(PROFILE_SORTS.items()))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purpose"].choices = [("", "Any purpose"), *consent_selectors.purpose_choices()]

    def clean(self):
        data = super().clean()
        if data.get("trait_value") and not data.get("trait"):
            self.add_error("trait", "Name the trait whose value to match.")
        if data.get("consent") and not data.get("purpose"):
            self.add_error("purpose", "Choose the purpose whose consent to filter on.")
        if data.get("seen_from") and data.get("seen_to") and data["seen_from"] > data["seen_to"]:
            self.add_error("seen_to", "The end of the range comes before its start.")
        return data

    def filters(self) -> dict:
        """The valid filters only: a bad field is reported and left out, the others still apply."""
        data = self.cleaned_data if self.is_bound else {}
        purpose = data.get("purpose", "")
        return {
            "query": data.get("q", ""), "trait": data.get("trait", ""),
            "trait_value": data.get("trait_value", "") if data.get("trait") else "",
            "purpose": purpose, "allowed": data.get("consent") != "denied",
            "seen_from": data.get("seen_from"), "seen_to": data.get("seen_to"),
            "sort": data.get("sort") or "-last_seen",
        }


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # inclusive
    preset: int | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


class DashboardRangeForm(forms.Form):
    days = forms.TypedChoiceField(label="Range", required=False, coerce=int, empty_value=None,
                                  choices=[(str(n), f"Last {n} days") for n in DASHBOARD_PRESETS])
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if bool(start) != bool(end) and not self.errors:
            raise forms.ValidationError("Give both dates of a custom range, or choose a preset.")
        if start and end:
            today = timezone.localdate()
            if start > end:
                raise forms.ValidationError("The range ends before it starts.")
            if end > today:
                raise forms.ValidationError("The range cannot end after today.")
            if (end - start).days + 1 > DASHBOARD_MAX_DAYS:
                raise forms.ValidationError(f"A range covers at most {DASHBOARD_MAX_DAYS} days.")
        return data

    def date_range(self) -> DateRange:
        """The range asked for, or the last 30 days when the form is empty or invalid (the errors say why)."""
        today = timezone.localdate()
        if self.is_bound and self.is_valid():
            if self.cleaned_data.get("start"):
                return DateRange(self.cleaned_data["start"], self.cleaned_data["end"], None)
            if self.cleaned_data.get("days"):
                days = self.cleaned_data["days"]
                return DateRange(today - timedelta(days=days - 1), today, days)
        return DateRange(today - timedelta(days=DASHBOARD_DEFAULT_DAYS - 1), today, DASHBOARD_DEFAULT_DAYS)
