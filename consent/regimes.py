"""Which privacy regime applies to a person, from the country (and region) in their traits. Pure functions."""
from __future__ import annotations

# EU and EEA member states, plus the United Kingdom and Switzerland, whose laws follow GDPR's opt-in model.
GDPR_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO GB CH".split())
# The United States: California's CCPA/CPRA, and the state laws modelled on it, are opt-out.
OPT_OUT_COUNTRIES = frozenset({"US"})
_COUNTRY_NAMES = {
    "UNITED STATES": "US", "USA": "US", "UNITED STATES OF AMERICA": "US", "UNITED KINGDOM": "GB", "UK": "GB",
    "GREAT BRITAIN": "GB", "GERMANY": "DE", "DEUTSCHLAND": "DE", "FRANCE": "FR", "SPAIN": "ES", "ITALY": "IT",
    "NETHERLANDS": "NL", "IRELAND": "IE", "SWITZERLAND": "CH", "AUSTRIA": "AT", "BELGIUM": "BE", "SWEDEN": "SE",
    "DENMARK": "DK", "FINLAND": "FI", "NORWAY": "NO", "POLAND": "PL", "PORTUGAL": "PT",
}




def country_code(traits: dict) -> str:
    """The ISO 3166 alpha-2 country of a profile's traits (`country`, or `address.country`), or ""."""
    value = traits.get("country")
    address = traits.get("address")
    if not value and isinstance(address, dict):
        value = address.get("country")
    if not isinstance(value, str):
        return ""
    value = value.strip().upper()
    return _COUNTRY_NAMES.get(value, value if len(value) == 2 else "")


def regime_for(traits: dict, *, default: str) -> str:
    """"gdpr" or "ccpa" for a profile with these traits; `default` when the country says neither."""
    country = country_code(traits)
    if country in GDPR_COUNTRIES:
        return "gdpr"
    if country in OPT_OUT_COUNTRIES:
        return "ccpa"
    return default
