"""Standard Webhooks signatures: the published test vector, and verification as a receiver does it."""

import base64
import time
from datetime import UTC, datetime

import orjson
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


# -- interoperability with the standard's own library (standardwebhooks on PyPI) -------------------------


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + base64.b64encode(b"k" * 32).decode()])
def test_the_standard_library_verifies_our_signatures_with_a_whsec_secret(secret):
    from standardwebhooks import Webhook

    body = b'{"type":"score.succeeded","data":{"id":"j1"}}'
    now = int(time.time())
    assert Webhook(secret).verify(body, headers(secret, "j1", body, timestamp=now)) == orjson.loads(body)
    # and ours verifies theirs
    theirs = Webhook(secret).sign("j1", datetime.fromtimestamp(now, tz=UTC), body.decode())
    verify(secret, {"webhook-id": "j1", "webhook-timestamp": str(now), "webhook-signature": theirs}, body)


def test_a_plain_secret_is_its_utf8_bytes_which_the_standard_library_takes_as_bytes():
    from standardwebhooks import Webhook, WebhookVerificationError

    secret, body, now = "not a whsec secret: ünïcode", b'{"a":1}', int(time.time())
    signed = headers(secret, "j2", body, timestamp=now)
    Webhook(secret.encode()).verify(body, signed)  # what the README tells a receiver to pass
    with pytest.raises(WebhookVerificationError):  # a str is base64 to the library: another key
        Webhook(base64.b64encode(b"wrong").decode()).verify(body, signed)
