"""Standard Webhooks signatures: the published test vector, and verification as a receiver does it."""

import base64

import pytest

from shared.errors import SignatureError
from shared.webhooks.signing import headers, sign, verify

# The test vector of the Standard Webhooks specification and its reference libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID, TIMESTAMP, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'


def test_published_vector():
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_and_tampering_fails():
    h = headers(SECRET, "job1", b'{"a":1}', timestamp=TIMESTAMP)
    assert set(h) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    verify(SECRET, h, b'{"a":1}', now=TIMESTAMP + 10)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(SECRET, h, b'{"a":2}', now=TIMESTAMP)
    with pytest.raises(SignatureError, match="too old"):
        verify(SECRET, h, b'{"a":1}', now=TIMESTAMP + 3600)
    other = "whsec_" + base64.b64encode(b"another key entirely").decode()
    with pytest.raises(SignatureError):
        verify(other, h, b'{"a":1}', now=TIMESTAMP)


def test_one_of_several_signatures_may_match_and_plain_secrets_work():
    h = headers("plain secret", "job2", b"{}", timestamp=TIMESTAMP)
    h["webhook-signature"] = "v1,bm9wZQ== " + h["webhook-signature"]
    verify("plain secret", h, b"{}", now=TIMESTAMP)
