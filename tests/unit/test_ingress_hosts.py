import pytest

from bastion_ingress.hosts import HostGuard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("host", ["127.0.0.1:8420", "localhost:8420", "localhost", "[::1]:8420", "LOCALHOST:1"])
def test_loopback_bind_accepts_loopback_names(host):
    assert HostGuard("127.0.0.1", []).problem(host, None) is None


@pytest.mark.parametrize(("host", "origin"), [("evil.example.com", None), ("evil.example.com:8420", None),
                                              ("127.0.0.1:8420", "http://evil.example.com"),
                                              ("localhost", "https://evil.example.com:443")])
def test_loopback_bind_refuses_rebinding(host, origin):
    assert "not allowed" in HostGuard("127.0.0.1", []).problem(host, origin)


def test_public_bind_without_a_list_accepts_any_and_a_list_restricts():
    assert HostGuard("0.0.0.0", []).problem("gw.example.com", "https://app.example.com") is None
    guard = HostGuard("0.0.0.0", ["gw.example.com"])
    assert guard.problem("gw.example.com:443", None) is None
    assert guard.problem("other.example.com", None) is not None
    assert HostGuard("127.0.0.1", []).problem("localhost", "http://localhost:3000") is None
