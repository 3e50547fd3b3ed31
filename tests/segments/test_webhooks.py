"""The signature scheme of segment webhooks: sign and verify, against HMAC computed by hand."""
import hashlib
import hmac

from hypothesis import given, strategies as st

from segments.webhooks import sign, verify

NOW = 1_750_000_000


def test_the_signature_is_hex_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(b"s3cret", b"1750000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign("s3cret", 1750000000, b'{"a":1}') == f"v1={expected}"


@given(secret=st.text(min_size=1), body=st.binary(), timestamp=st.integers(0, 2**40))
def test_a_signed_body_verifies_and_any_change_does_not(secret, body, timestamp):
    signature = sign(secret, timestamp, body)
    assert verify(secret, str(timestamp), signature, body, now=timestamp)
    assert not verify(secret, str(timestamp), signature, body + b" ", now=timestamp)
    assert not verify(secret + "x", str(timestamp), signature, body, now=timestamp)
    assert not verify(secret, str(timestamp + 1), signature, body, now=timestamp)


def test_a_timestamp_outside_the_tolerance_is_refused_either_way():
    body = b"{}"
    signature = sign("k", NOW, body)
    assert verify("k", str(NOW), signature, body, now=NOW + 300)
    assert not verify("k", str(NOW), signature, body, now=NOW + 301)
    assert not verify("k", str(NOW), signature, body, now=NOW - 301)
    assert verify("k", str(NOW), signature, body, tolerance_s=1000, now=NOW + 999)


def test_one_matching_signature_of_several_is_enough_during_a_secret_rotation():
    body = b'{"type":"segment.entered"}'
    header = f"{sign('old-secret', NOW, body)}, {sign('new-secret', NOW, body)}"
    assert verify("new-secret", str(NOW), header, body, now=NOW)
    assert verify("old-secret", str(NOW), header, body, now=NOW)
    assert not verify("other", str(NOW), header, body, now=NOW)


def test_malformed_headers_do_not_verify():
    body = b"{}"
    good = sign("k", NOW, body)
    for timestamp, signature in [("", good), ("abc", good), ("-1", good), ("١٢", good), (str(NOW), ""),
                                 (str(NOW), good.removeprefix("v1=")), (str(NOW), "v0=" + good[3:]),
                                 (str(NOW), "v1=zz")]:
        assert not verify("k", timestamp, signature, body, now=NOW), (timestamp, signature)
    assert verify("k", str(NOW), good, body, now=NOW)
