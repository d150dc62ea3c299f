"""The SSRF guard: scheme, credentials, literal and resolved addresses."""

import ipaddress
from typing import Any

import pytest

from shared.errors import CallbackRefused
from shared.webhooks.ssrf import check


def resolver(mapping: dict[str, list[str]]) -> Any:
    return lambda host, port: mapping[host]


PUBLIC = resolver({"hooks.example.com": ["93.184.215.14"], "mixed.example.com": ["93.184.215.14", "10.0.0.5"],
                   "inside.example.com": ["127.0.0.1"], "v6.example.com": ["2606:4700::6810:85e5"]})


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/tuneflow?token=abc", "https://93.184.215.14/x", "https://v6.example.com:8443/",
])
def test_public_https_targets_are_accepted(url):
    target, addresses = check(url, allow_http=False, allow_private=False, resolver=PUBLIC)
    assert addresses and target.scheme == "https"


@pytest.mark.parametrize(("url", "words"), [
    ("http://hooks.example.com/", "must use https"),
    ("ftp://hooks.example.com/", "https://"),
    ("https://user:pw@hooks.example.com/", "credentials"),
    ("https://127.0.0.1/", "127.0.0.1, loopback"),
    ("https://[::1]:8443/", "loopback"),
    ("https://10.1.2.3/", "private"),
    ("https://192.168.1.10/", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://224.0.0.1/", "multicast"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://100.64.0.1/", "non-public"),
    ("https://[::ffff:127.0.0.1]/", "non-public"),
    ("https://inside.example.com/", "loopback"),
    ("https://mixed.example.com/", "private"),
    ("https:///nohost", "no host"),
    ("https://hooks.example.com:99999/", "not a valid URL"),
])
def test_refusals(url, words):
    with pytest.raises(CallbackRefused) as err:
        check(url, allow_http=False, allow_private=False, resolver=PUBLIC)
    assert words in err.value.message


def test_resolved_private_address_is_not_disclosed():
    with pytest.raises(CallbackRefused) as err:
        check("https://inside.example.com/", allow_http=False, allow_private=False, resolver=PUBLIC)
    assert "127.0.0.1" not in err.value.message


def test_settings_can_allow_http_and_private_targets():
    target, addresses = check("http://127.0.0.1:8080/hook", allow_http=True, allow_private=True, resolver=PUBLIC)
    assert (target.host_header, target.pinned_url(addresses[0])) == ("127.0.0.1:8080", "http://127.0.0.1:8080/hook")


@pytest.mark.parametrize("host", [
    "::169.254.169.254", "::10.0.0.1", "::127.0.0.1", "::a9fe:a9fe",  # IPv4-compatible (RFC 4291)
    "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.1", "64:ff9b::7f00:1",  # well-known NAT64 (RFC 6052)
    "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:2::8.8.8.8",  # local-use NAT64 (RFC 8215): a local network's own
    "::ffff:169.254.169.254", "2002:a9fe:a9fe::1",  # IPv4-mapped, 6to4
    "2001:0:4136:e378:8000:63bf:f5fe:fefe",  # Teredo whose client is 10.1.1.1 (stored inverted)
])
def test_ipv6_forms_that_embed_a_non_public_ipv4_address_are_refused(host):
    with pytest.raises(CallbackRefused, match="non-public"):
        check(f"https://[{host}]/hook", allow_http=False, allow_private=False)
    # and when a name resolves to one, the same
    with pytest.raises(CallbackRefused, match="non-public"):
        check("https://hooks.example.com/", allow_http=False, allow_private=False,
              resolver=resolver({"hooks.example.com": [host]}))


@pytest.mark.parametrize("host", ["64:ff9b::808:808", "::8.8.8.8", "2002:808:808::1"])
def test_ipv6_forms_embedding_a_public_ipv4_address_reach_it(host):
    target, addresses = check(f"https://[{host}]/hook", allow_http=False, allow_private=False)
    assert target.literal and [str(a) for a in addresses] == [str(ipaddress.ip_address(host))]


def test_allow_private_accepts_the_embedded_forms_too():
    _, addresses = check("https://[::169.254.169.254]/", allow_http=False, allow_private=True)
    assert len(addresses) == 1
