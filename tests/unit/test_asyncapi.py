"""The AsyncAPI document in docs/ is generated from the contracts and kept current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.contracts import subjects
from tools.asyncapi import CHANNELS, specification

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_document_is_what_the_contracts_generate() -> None:
    assert json.loads(DOC.read_text()) == specification(), (
        "docs/asyncapi.json is stale: python -m tools.asyncapi docs/asyncapi.json"
    )


def test_every_request_subject_has_its_payload_and_reply_schema() -> None:
    document = specification()
    assert document["asyncapi"] == "3.0.0"
    schemas = document["components"]["schemas"]
    addresses = {channel["address"]: channel for channel in document["channels"].values()}
    for channel in CHANNELS:
        assert channel.subject in addresses, channel.subject
        assert channel.message.__name__ in schemas
        # the schema is the model's own: every field the contract has
        assert set(schemas[channel.message.__name__]["properties"]) == set(channel.message.model_fields)
        if channel.reply is not None:
            assert f"{channel.subject}.reply" in addresses and channel.reply.__name__ in schemas
        binding = addresses[channel.subject]["bindings"]["nats"]
        assert binding.get("queue", "") == (channel.queue or "")


def test_the_subjects_services_answer_on_are_all_documented() -> None:
    documented = {channel.subject for channel in CHANNELS}
    answered = {
        subjects.POLICY_CALL,
        subjects.POLICY_REQUEST,
        subjects.POLICY_LIST,
        subjects.POLICY_LLM,
        subjects.EXEC_CALL,
        subjects.EXEC_LLM,
        subjects.EXEC_REQUEST,
        subjects.CODEMODE_CALL,
        subjects.AUDIT_QUERY,
        subjects.AUDIT_EXPORT,
        subjects.ANALYTICS_QUERY,
        subjects.AUDIT_VERIFY,
        subjects.CALL_CANCEL,
        subjects.EXEC_CANCEL,
        subjects.RESOURCE_UPDATED,
        subjects.POLICY_REFUND,
        subjects.OAUTH_HTTP,
        subjects.OAUTH_PASSWORD,
        subjects.OAUTH_UPSTREAM_TOKEN,
        subjects.OAUTH_UPSTREAM_LINK,
    }
    assert answered <= documented
