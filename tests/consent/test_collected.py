"""Reading consent signals from messages, TCF decoding against the IAB's published test strings, regimes."""
import pytest

from consent.collected import message_signals, tcf_decode
from consent.regimes import country_code, regime_for

# From the IAB Tech Lab's own decoder tests (InteractiveAdvertisingBureau/iabtcf-java, TCStringV2Test), with
# the values those tests assert.
IAB_PURPOSES_2_10 = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"
IAB_PURPOSES_3_TO_9 = "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA"
IAB_PURPOSES_1_2 = "COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA"
IAB_ALL_SEGMENTS = IAB_PURPOSES_3_TO_9 + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA"


@pytest.mark.parametrize(("tc_string", "purposes", "cmp_id"), [
    (IAB_PURPOSES_2_10, {2, 10}, 675),
    (IAB_PURPOSES_3_TO_9, {3, 4, 5, 6, 7, 8, 9}, 2),
    (IAB_PURPOSES_1_2, {1, 2}, 681),
    (IAB_ALL_SEGMENTS, {3, 4, 5, 6, 7, 8, 9}, 2),
])
def test_tcf_strings_from_the_iab_test_suite_decode_to_their_published_purposes(tc_string, purposes, cmp_id):
    decoded = tcf_decode(tc_string)
    assert decoded.purposes == purposes and decoded.cmp_id == cmp_id and decoded.policy_version == 2


@pytest.mark.parametrize("garbage", ["", "not-a-tc-string", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"])
def test_a_string_that_is_not_tcf_v2_is_refused_with_a_reason(garbage):
    with pytest.raises(ValueError, match="TCF"):
        tcf_decode(garbage)


def test_a_message_without_consent_context_has_no_signals():
    assert message_signals({"type": "track", "context": {"ip": "1.2.3.4"}}) is None
    assert message_signals({"type": "track"}) is None


def test_signals_are_read_from_every_place_clients_put_them():
    signals = message_signals({"context": {"consent": {"categoryPreferences": {"Advertising": False, "x": "yes"},
                                                       "tcString": IAB_PURPOSES_1_2}, "gpc": True}})
    assert signals.categories == {"Advertising": False}  # non-boolean preferences are ignored
    assert signals.tcf.purposes == {1, 2} and signals.gpc
    assert message_signals({"context": {"gdpr_consent": IAB_PURPOSES_2_10}}).tcf.purposes == {2, 10}
    broken = message_signals({"context": {"consent": {"tcString": "garbage"}}})
    assert broken.tcf is None and "TCF" in broken.tcf_error


@pytest.mark.parametrize(("traits", "regime"), [
    ({"country": "DE"}, "gdpr"), ({"country": "united kingdom"}, "gdpr"), ({"address": {"country": "FR"}}, "gdpr"),
    ({"country": "US", "state": "CA"}, "ccpa"), ({"country": "USA"}, "ccpa"),
    ({"country": "BR"}, "default"), ({}, "default"), ({"country": 7}, "default"),
])
def test_the_regime_follows_the_country_with_a_default(traits, regime):
    assert regime_for(traits, default="default") == regime


def test_country_names_and_codes_are_normalised():
    assert country_code({"country": " de "}) == "DE" and country_code({"country": "Germany"}) == "DE"
    assert country_code({"country": "Atlantis"}) == ""
