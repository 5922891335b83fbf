"""Webhook targets: public addresses only, unless a network is explicitly allowed."""

from __future__ import annotations

import pytest

from monitor.alerts.targets import RefusedTarget, check_target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("http://[::1]:8080/hook", "::1 is a loopback address"),
        ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://192.168.1.20/", "192.168.1.20 is a private address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://0.0.0.0:80/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped 169.254.169.254) is a link-local"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped 127.0.0.1) is a loopback"),
        ("http://100.64.0.1/", "100.64.0.1 is a non-public address"),
    ],
)
def test_addresses_that_are_not_public_are_refused_and_say_how_to_allow_them(
    url: str, reason: str
) -> None:
    with pytest.raises(RefusedTarget, match=r"allow it with MONITOR_WEBHOOK_ALLOWED_NETWORKS") as e:
        check_target(url, [])
    assert reason in str(e.value)


def test_loopback_is_allowed_only_inside_an_allowed_network() -> None:
    target = check_target("http://127.0.0.1:8900/hook", ["127.0.0.1/32"])
    assert target.addresses == ("127.0.0.1",) and target.port == 8900
    assert check_target("http://[::1]/", ["::1/128"]).addresses == ("::1",)
    with pytest.raises(RefusedTarget, match=r"127\.0\.0\.2 is a loopback"):
        check_target("http://127.0.0.2/", ["127.0.0.1/32"])
    with pytest.raises(RefusedTarget, match="::1 is a loopback"):
        check_target("http://[::1]/", ["127.0.0.0/8"])
    assert check_target("http://10.1.2.3/", ["10.0.0.0/8"]).host == "10.1.2.3"


def test_public_addresses_pass() -> None:
    assert check_target("https://93.184.216.34/hook", []).port == 443
    assert check_target("http://[2606:4700:4700::1111]/", []).addresses == ("2606:4700:4700::1111",)
    assert check_target("http://8.8.8.8:8080/x?y=1", []).port == 8080


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://93.184.216.34/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "has no host"),
        ("http://user:pw@93.184.216.34/", "user name or password"),
        ("http://93.184.216.34:99999/", "not a URL"),
    ],
)
def test_what_is_not_an_http_url_is_refused(url: str, reason: str) -> None:
    with pytest.raises(RefusedTarget, match=reason):
        check_target(url, [])


def test_a_bad_allowed_network_is_named() -> None:
    with pytest.raises(ValueError, match="'loopback' is not a network"):
        check_target("http://127.0.0.1/", ["loopback"])


def test_a_name_is_resolved_and_every_address_must_pass() -> None:
    # "localhost" resolves through the hosts file, not the internet.
    with pytest.raises(RefusedTarget, match="loopback"):
        check_target("http://localhost:9/", [])
    allowed = check_target("http://localhost:9/", ["127.0.0.0/8", "::1/128"])
    assert allowed.host == "localhost" and allowed.addresses
