"""Configuration examples in the docs are real: every YAML block that looks like a config parses."""

import re
from pathlib import Path

import pytest
import yaml

from libs.common.settings.config_file import key_hash, parse_config

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def _blocks():
    for page in ("access-control.md", "configuration.md", "llm.md", "llm-providers.md", "llm-routing.md"):
        for i, block in enumerate(BLOCK.findall((DOCS / page).read_text())):
            yield pytest.param(block, id=f"{page}#{i}")


@pytest.mark.parametrize("block", list(_blocks()))
def test_yaml_examples_are_valid_configs(block, monkeypatch):
    monkeypatch.setenv("FINANCE_BOT_KEY", "bk_docs_example_secret_0000")
    monkeypatch.setenv("ANN_KEY", "bk_docs_example_secret_1111")
    monkeypatch.setenv("SUPPORT_BOT_KEY", "bk_docs_example_secret_2222")
    monkeypatch.setenv("APP_KEY", "bk_docs_example_secret_3333")
    config = parse_config(yaml.safe_load(block), "docs example")
    for key in config.keys:
        assert len(key_hash(key)) == 64


def test_the_example_config_is_valid():
    from libs.common.settings.config_file import load_config

    config = load_config(DOCS.parent / "examples" / "bastion.yaml")
    assert {"echo", "notes"} <= set(config.mcp_servers) and config.keys
