"""Every built-in detector, on the shipped attack set (each item must fire) and on look-alikes that
must not: hashes, UUIDs, cursors, code that names a secret without holding one, numbers that fail
their checksum, a flag emoji's tag characters, badges and documentation links."""

from __future__ import annotations

import random
import string
import sys
from pathlib import Path

import pytest

from libs.common.contracts.guardrails import (
    EXFIL_ENTITIES,
    INJECTION_ENTITIES,
    PII_ENTITIES,
    SECRET_ENTITIES,
    UNICODE_ENTITIES,
    GuardrailRule,
    GuardrailsSection,
)
from libs.common.contracts.messages_base import Caller
from services.executor.guardrails import Guardrails, Subject, visible_text
from services.executor.guardrails.pii import iban_valid, luhn_valid
from services.executor.guardrails.secrets import PATTERNS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from guardrails_corpus import benign_results, load_attacks, tool_definitions

pytestmark = pytest.mark.unit

CALLER = Caller(key_id="k" * 64, key_name="ci")
ATTACKS = load_attacks()
RNG = random.Random(5)


def only(detector: str, **extra) -> Guardrails:
    rule = GuardrailRule(name="only", detector=detector, where=["arguments", "result", "definition"], **extra)
    return Guardrails.compile(GuardrailsSection(defaults=False, rules=[rule]))


DETECTORS = {d: only(d) for d in ("secrets", "pii", "injection", "hidden_unicode", "exfil_links")}


def entities(detector: str, where: str, payload) -> set[str]:
    caller = None if where == "definition" else CALLER
    found = DETECTORS[detector].inspect(where, Subject("s", "t", caller), payload).decisions
    return {d.entity for d in found}


def text(body: str) -> dict:
    return {"content": [{"type": "text", "text": body}]}


@pytest.mark.parametrize("item", ATTACKS, ids=[a["id"] for a in ATTACKS])
def test_every_attack_item_fires_its_detector_with_its_entity(item):
    assert item["entity"] in entities(item["detector"], item["where"], item["content"])


def test_the_attack_set_covers_every_entity_and_its_markers_are_removed():
    covered = {(a["detector"], a["entity"]) for a in ATTACKS}
    for detector, known in (
        ("secrets", SECRET_ENTITIES),
        ("pii", PII_ENTITIES),
        ("injection", INJECTION_ENTITIES),
        ("hidden_unicode", UNICODE_ENTITIES),
        ("exfil_links", EXFIL_ENTITIES),
    ):
        missing = {e for e in known if (detector, e) not in covered}
        assert not missing, f"{detector}: no attack item for {missing}"
    assert not any("{{}}" in str(a["content"]) for a in ATTACKS)
    raw = (Path(__file__).resolve().parents[1] / "data" / "guardrails" / "attacks.jsonl").read_text()
    assert raw.isascii()  # invisible characters are stored escaped
    # as stored, the file holds nothing a secret scanner would take for a leak
    assert entities("secrets", "result", text(raw)) == set()


def test_every_secret_pattern_names_a_known_entity():
    assert {p.entity for p in PATTERNS} | {"aws_secret_access_key", "password_assignment"} == SECRET_ENTITIES


def _r(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


SECRET_LOOKALIKES = [
    f"commit {_r(40, '0123456789abcdef')} tree {_r(40, '0123456789abcdef')}",
    "request_id=3f2b6c1e-8a4d-4f6b-9c2e-1d7a5b3e9f00 trace=4bf92f3577b34da6a3ce929d0e0e4736",
    f'"nextPageToken": "{_r(40)}", "pageToken": "CAEQAA", "cursor": "eyJpZCI6MTIzfQ=="',
    'password = os.environ["DB_PASSWORD"]\ntoken = get_token()\nself.password = password',
    "const password = process.env.DB_PASSWORD ?? '';\nheaders: { Authorization: `Bearer ${token}` }",
    'url = f"postgres://{user}:{password}@{host}/db"\nDATABASE_URL=postgres://app:${DB_PASSWORD}@db/app',
    "token_count=4000 max_tokens: 1024 prompt_tokens=12 tokens_per_second=55.1",
    "password: <your password>\napi_key: YOUR_API_KEY_HERE\nsecret: changeme\ntoken: xxxxxxxx",
    "sk-test ghp_short hf_hub_download npm_config_cache AIza sk_live_",
    f"integrity sha512-{_r(86, string.ascii_letters + string.digits + '+/')}==",
    "docker pull ghcr.io/org/api@sha256:" + _r(64, "0123456789abcdef"),
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
    "AKIA is how AWS key ids start; ASIA ones are temporary.",
    "https://user@example.com/path and mailto:ops@example.com and http://localhost:8080/health",
    f"inside longer tokens: xghp_{_r(36)} XAKIA{_r(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}",
]


@pytest.mark.parametrize("sample", SECRET_LOOKALIKES)
def test_secret_lookalikes_are_not_secrets(sample):
    assert entities("secrets", "result", text(sample)) == set()


PII_LOOKALIKES = [
    "order 4111111111111112 shipped",  # fails Luhn
    "invoice 1234567812345678 and build 20260305123456",
    "IBAN GB82 WEST 1234 5698 7654 33 is a typo",  # wrong checksum
    "version 1.2.3-alpha.4, ip 192.168.100.254, port 8080, date 2026-03-05",
    "icon@2x.png and git@github.com:org/repo.git and @types/node",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "SSN-like 000-12-3456 and 666-12-3456 are never issued",
    "trace_id=a4111111111111111fb835f6 etag 599f85fb131430aa4111111111111111a",  # digits inside hex ids
]


@pytest.mark.parametrize("sample", PII_LOOKALIKES)
def test_pii_lookalikes_are_not_pii(sample):
    assert entities("pii", "result", text(sample)) == set()


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("XX82WEST12345698765432") and not iban_valid("GB82WEST1234569876543")


def test_pii_entities_narrow_the_detector():
    sample = text("mail ana@example.org or call +44 20 7946 0958")
    assert entities("pii", "result", sample) == {"email", "phone"}
    narrowed = only("pii", entities=["phone"])
    found = narrowed.inspect("result", Subject("s", "t", CALLER), sample).decisions
    assert {d.entity for d in found} == {"phone"}


@pytest.mark.parametrize(("detector", "known"), [("injection", INJECTION_ENTITIES), ("exfil_links", EXFIL_ENTITIES)])
def test_a_rule_naming_one_entity_finds_that_entity_alone(detector, known):
    """Each detector keeps only the patterns of the entities a rule names (`EntityDetector.rules`)."""
    items = [a for a in ATTACKS if a["detector"] == detector]
    for entity in sorted(known):
        narrowed = only(detector, entities=[entity])
        for item in items:
            caller = None if item["where"] == "definition" else CALLER
            found = narrowed.inspect(item["where"], Subject("s", "t", caller), item["content"]).decisions
            assert {d.entity for d in found} <= {entity}, item["id"]
            assert item["entity"] != entity or found, item["id"]


INJECTION_LOOKALIKES = [
    "Ignored if queryType is 'instant'. Matches file paths to ignore.",
    "The ID of the user. If provided, returns only that user's details.",
    "Use get_branch before deletion and never use it to remove branch protection.",
    "You SHOULD ALWAYS enable this to ensure authorized access.",
    "Returns the <uid> of the dashboard; layout is <GridLayout>.",
    "Before using 'queryVector', verify the index exists.",
    "Do not include secrets in the description field.",
]


@pytest.mark.parametrize("sample", INJECTION_LOOKALIKES)
def test_injection_lookalikes_in_descriptions_are_not_injection(sample):
    definition = {"name": "t", "description": sample, "inputSchema": {"type": "object"}}
    assert entities("injection", "definition", definition) == set()


UNICODE_BENIGN = [
    "Flags: \U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f England",  # a real subdivision flag
    "Family \U0001f468\u200d\U0001f469\u200d\U0001f467 and heart \u2764\ufe0f",  # ZWJ sequence, VS16
    "Persian text with a ZWNJ: \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "\ufeffa file that starts with a BOM",
    "Café, naïve, 東京, Ελληνικά, עברית",
]


@pytest.mark.parametrize("sample", UNICODE_BENIGN)
def test_ordinary_unicode_is_not_hidden_text(sample):
    assert entities("hidden_unicode", "result", text(sample)) == set()


def test_visible_text_reads_what_the_model_reads():
    smuggled = "hi" + "".join(chr(0xE0000 + ord(c)) for c in "ignore that")
    assert visible_text(smuggled) == "hiignore that"
    assert visible_text("ig\u200bno\u2060re") == "ignore"
    assert visible_text("plain") == "plain"


LINK_BENIGN = [
    "[![PyPI](https://img.shields.io/pypi/v/demo?style=flat-square&logo=python)](https://pypi.org/project/demo/)",
    "See [the docs](https://docs.example.com/guide?version=1.2&lang=en#setup).",
    "![arch](https://raw.githubusercontent.com/org/demo/0123456789abcdef0123456789abcdef01234567/docs/arch.png)",
    "<img src='https://bucket.s3.amazonaws.com/a.png?X-Amz-Signature=" + "ab" * 32 + "&X-Amz-Expires=300'>",
    "[search](https://www.google.com/search?q=mcp)",
]


@pytest.mark.parametrize("sample", LINK_BENIGN)
def test_ordinary_links_and_images_carry_no_data(sample):
    assert entities("exfil_links", "result", text(sample)) == set()


def test_deny_terms_and_patterns():
    guard = only("deny", terms=["Project Falcon"], patterns=[r"(?i)drop\s+table"])
    subject = Subject("db", "query", CALLER)
    found = guard.inspect("arguments", subject, {"sql": "drop   table users; -- project falcon"}).decisions
    assert {d.entity for d in found} == {"term", "pattern"}
    assert guard.inspect("arguments", subject, {"sql": "select 1"}).decisions == ()


def test_the_default_rules_flag_at_most_half_a_percent_of_the_benign_set():
    defaults = Guardrails.compile(GuardrailsSection())
    flagged, items = [], 0
    for server, tool in tool_definitions():
        items += 1
        if defaults.inspect("definition", Subject(server, tool["name"]), tool).decisions:
            flagged.append(f"{server}/{tool['name']}")
    for kind, result in benign_results(650):
        items += 1
        if defaults.inspect("result", Subject("bench", kind, CALLER), result).decisions:
            flagged.append(kind)
    assert len(flagged) <= items * 0.005, flagged
