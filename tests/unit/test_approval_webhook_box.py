"""The policy service's OS box and egress rules for the approval webhook, as `bastion up` configures
them: the webhook's port opened and no other beyond its own, the configuration's `egress` section
handed to policy as to the executor (docs/approvals.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.layout import resolve_endpoints, service_specs
from libs.common.runtime.walls.boxes import box_for
from libs.common.settings import PolicySettings
from libs.common.settings.config_file import parse_config

pytestmark = pytest.mark.unit

_OWN = {"nats_url": "nats://127.0.0.1:4222", "redis_url": "redis://127.0.0.1:6390/0", "otlp_endpoint": ""}


@pytest.mark.parametrize(
    ("webhook", "port"),
    [("https://chat.example.com/hooks/T0/B0/x", 443), ("http://127.0.0.1:8765/hooks", 8765), ("http://bot/h", 80)],
)
def test_the_policy_box_opens_the_webhooks_port(tmp_path: Path, webhook: str, port: int) -> None:
    plain = box_for("policy", PolicySettings(**_OWN), str(tmp_path))
    assert plain.connect_ports == [4222, 6390]
    boxed = box_for("policy", PolicySettings(**_OWN, approval_webhook_url=webhook), str(tmp_path))
    assert boxed.connect_ports == sorted({4222, 6390, port})


def test_bastion_up_hands_the_egress_section_to_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"egress": {"allow_private_hosts": ["127.0.0.1", "chat.internal"]}})
    ep = resolve_endpoints(config, None, None, tmp_path, {})
    specs = {spec.name: spec.env or {} for spec in service_specs(config, ep, "session", {})}
    monkeypatch.setenv("BASTION_EGRESS", specs["policy"]["BASTION_EGRESS"])
    assert PolicySettings().egress.allow_private_hosts == ["127.0.0.1", "chat.internal"]
    bare = {spec.name: spec.env or {} for spec in service_specs(parse_config({}), ep, "session", {})}
    assert "BASTION_EGRESS" not in bare["policy"]
