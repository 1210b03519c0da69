import pytest
from pydantic import ValidationError

from libs.common.settings import IngressSettings
from services.ingress.web.hosts import HostGuard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("host", ["127.0.0.1:8420", "localhost:8420", "localhost", "[::1]:8420", "LOCALHOST:1"])
def test_loopback_bind_accepts_loopback_names(host):
    assert HostGuard("127.0.0.1", []).problem(host, None) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("evil.example.com", None),
        ("evil.example.com:8420", None),
        ("127.0.0.1:8420", "http://evil.example.com"),
        ("localhost", "https://evil.example.com:443"),
    ],
)
def test_loopback_bind_refuses_rebinding(host, origin):
    assert "not allowed" in HostGuard("127.0.0.1", []).problem(host, origin)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3"])
def test_public_bind_without_a_list_fails_closed_and_says_what_to_set(bind):
    with pytest.raises(ValueError, match=r"BASTION_ALLOWED_HOSTS.*BASTION_ALLOW_ANY_HOST"):
        HostGuard(bind, [])
    with pytest.raises(ValidationError, match="BASTION_ALLOWED_HOSTS"):
        IngressSettings(host=bind)
    assert IngressSettings(host=bind, allowed_hosts=["gw.example.com"]).host == bind


def test_the_explicit_opt_out_accepts_any_host():
    guard = HostGuard("0.0.0.0", [], allow_any_host=True)
    assert guard.problem("gw.example.com", "https://app.example.com") is None
    assert IngressSettings(host="0.0.0.0", allow_any_host=True).allow_any_host


def test_a_list_restricts_a_public_bind():
    guard = HostGuard("0.0.0.0", ["gw.example.com"])
    assert guard.problem("gw.example.com:443", None) is None
    assert guard.problem("other.example.com", None) is not None
    assert HostGuard("127.0.0.1", []).problem("localhost", "http://localhost:3000") is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://[::1",  # not a URL: urlsplit raises, which once became an HTTP 500
        "null",  # sandboxed frames and file:// pages: a browser all the same
        "http://[zz::1]:80",
        "",
    ],
)
def test_origins_that_are_not_an_allowed_url_are_refused(origin):
    problem = HostGuard("127.0.0.1", []).problem("localhost", origin)
    assert problem is not None and "origin" in problem


@pytest.mark.parametrize("repeated", [("origin",), ("host",), ("host", "origin")])
def test_a_repeated_host_or_origin_is_refused_even_when_any_host_is_allowed(repeated):
    for guard in (HostGuard("127.0.0.1", []), HostGuard("0.0.0.0", [], allow_any_host=True)):
        assert "more than once" in guard.problem("localhost", "http://localhost", repeated)
