"""Guardrails configuration and the decision record (docs/guardrails.md).

The `guardrails` section of the config file: built-in rules on by default (credentials in arguments
and results redacted; injection markers, hidden Unicode and exfiltration links in definitions
flagged), the PII rule one switch away (`pii: true`), and the deployment's own rules. A rule binds to
tools the way a grant does (`server/tool` patterns, tool groups) and, for arguments and results, to
callers (keys, users, teams, customers); it runs one detector and takes one action.

`GuardrailDecision` is what a rule that fired records (in the audit event and the logs): the rule,
detector, kind of thing found, action, where and the JSON pointer, never the matched text.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.common.contracts.repeats import named_once

__all__ = [
    "ACTION_ORDER",
    "DEFAULT_RULES",
    "DETECTOR_ENTITIES",
    "EXFIL_ENTITIES",
    "INJECTION_ENTITIES",
    "PII_ENTITIES",
    "SECRET_ENTITIES",
    "UNICODE_ENTITIES",
    "Action",
    "Detector",
    "GuardrailDecision",
    "GuardrailRule",
    "GuardrailsSection",
    "WebhookGuard",
    "Where",
    "effective_rules",
]

Where = Literal["arguments", "result", "definition"]
Action = Literal["block", "redact", "warn", "log"]
Detector = Literal["secrets", "pii", "injection", "hidden_unicode", "exfil_links", "size", "deny", "webhook"]

ACTION_ORDER: Final[dict[str, int]] = {"block": 3, "redact": 2, "warn": 1, "log": 0}
"""When several rules fire on one payload the strongest action wins."""

SECRET_ENTITIES: Final = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "gcp_api_key",
        "gcp_oauth_client_secret",
        "gcp_access_token",
        "azure_storage_key",
        "azure_sas_token",
        "azure_client_secret",
        "github_token",
        "gitlab_token",
        "slack_token",
        "slack_webhook",
        "stripe_key",
        "openai_key",
        "anthropic_key",
        "huggingface_token",
        "npm_token",
        "pypi_token",
        "sendgrid_key",
        "telegram_bot_token",
        "digitalocean_token",
        "shopify_token",
        "vault_token",
        "age_secret_key",
        "private_key",
        "jwt",
        "url_password",
        "auth_header",
        "password_assignment",
    }
)
PII_ENTITIES: Final = frozenset({"email", "phone", "payment_card", "iban", "us_ssn", "uk_nino"})
INJECTION_ENTITIES: Final = frozenset(
    {"override", "concealment", "instruction_tags", "role_hijack", "sensitive_file", "redirect", "prerequisite_trap"}
)
UNICODE_ENTITIES: Final = frozenset({"unicode_tags", "bidi_control", "invisible_chars", "variation_selectors"})
EXFIL_ENTITIES: Final = frozenset({"markdown_image", "html_image", "markdown_link"})
DETECTOR_ENTITIES: Final[dict[str, frozenset[str]]] = {
    "secrets": SECRET_ENTITIES,
    "pii": PII_ENTITIES,
    "injection": INJECTION_ENTITIES,
    "hidden_unicode": UNICODE_ENTITIES,
    "exfil_links": EXFIL_ENTITIES,
}

_DEFAULT_WHERE: Final[tuple[Where, ...]] = ("arguments", "result")
_RULE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_CALLER_FIELDS = ("keys", "users", "teams", "customers")
MAX_TERMS: Final = 256
MAX_TERM_CHARS: Final = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookGuard(_Strict):
    """An external guardrail (a model, a DLP service).

    Bastion POSTs the payload, the service answers whether it matches (docs/guardrails.md, "External
    guardrails")."""

    url: str
    timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    """Seconds to wait for the answer; then `fail` decides."""
    fail: Literal["open", "closed"] = "closed"
    """When the service is down, slow or answers nonsense: "open" lets the payload through (and logs
    it), "closed" blocks it."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Sent with every request (an `Authorization` the service expects); never logged."""
    max_payload_bytes: Annotated[int, Field(gt=0, le=64 * 1024 * 1024)] = 1024 * 1024
    """A payload larger than this is not sent; `fail` decides as for an unreachable service."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("'url' must be an http:// or https:// URL with a host")
        return url


class GuardrailRule(_Strict):
    """One check: a detector, where it looks, what it covers, and what happens when it fires."""

    name: Annotated[str, Field(pattern=_RULE_NAME)]
    """Unique; a rule named like a built-in one (`default-secrets`) replaces it."""
    detector: Detector
    entities: list[str] | None = None
    """Narrows a built-in detector to these kinds (e.g. pii: [email, payment_card]); all when omitted."""
    where: list[Where] = Field(default_factory=lambda: list(_DEFAULT_WHERE), min_length=1)
    action: Action = "warn"
    tools: list[str] = Field(default_factory=lambda: ["*"])
    """Grant patterns (`server/tool`, `github/*`, `*`) the rule covers, with the tools of `groups`."""
    groups: list[str] = Field(default_factory=list)
    """Tool groups whose patterns the rule also covers."""
    keys: list[str] = Field(default_factory=list)
    """Key names (or ids) the rule applies to; with users, teams, customers: any of them. Empty: everyone."""
    users: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    customers: list[str] = Field(default_factory=list)
    terms: list[Annotated[str, Field(min_length=1, max_length=MAX_TERM_CHARS)]] = Field(
        default_factory=list, max_length=MAX_TERMS
    )
    """deny: words or phrases (case-insensitive) that must not pass."""
    patterns: list[Annotated[str, Field(min_length=1, max_length=MAX_TERM_CHARS)]] = Field(
        default_factory=list, max_length=MAX_TERMS
    )
    """deny: regular expressions (Python syntax) that must not match."""
    max_bytes: Annotated[int | None, Field(gt=0)] = None
    """size: the largest payload (its JSON, in bytes) allowed through."""
    webhook: WebhookGuard | None = None

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {i} is not a regular expression: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _fits_detector(self) -> GuardrailRule:
        detector = self.detector
        if (detector == "deny") != bool(self.terms or self.patterns):
            raise ValueError("'terms' or 'patterns' go with detector 'deny', and 'deny' needs one of them")
        if (detector == "size") != (self.max_bytes is not None):
            raise ValueError("'max_bytes' goes with detector 'size', and 'size' needs it")
        if (detector == "webhook") != (self.webhook is not None):
            raise ValueError("'webhook' goes with detector 'webhook', and 'webhook' needs it")
        if self.entities is not None:
            known = DETECTOR_ENTITIES.get(detector)
            if known is None:
                raise ValueError(f"detector {detector!r} has no entities to narrow")
            unknown = sorted(set(self.entities) - known)
            if unknown:
                raise ValueError(f"unknown {detector} entities {unknown}; known: {', '.join(sorted(known))}")
        if "definition" in self.where and any(getattr(self, f) for f in _CALLER_FIELDS):
            raise ValueError(
                "'keys', 'users', 'teams' and 'customers' narrow arguments and results; definitions are checked"
                " once for everyone"
            )
        if self.action == "redact" and detector == "size":
            raise ValueError("a size rule cannot redact; use block, warn or log")
        return self


def _default_rules(pii: bool, pii_entities: list[str]) -> list[GuardrailRule]:
    rules = [
        GuardrailRule(name="default-secrets", detector="secrets", where=["arguments", "result"], action="redact"),
        GuardrailRule(name="default-injection", detector="injection", where=["definition"], action="warn"),
        GuardrailRule(name="default-hidden-unicode", detector="hidden_unicode", where=["definition"], action="warn"),
        GuardrailRule(name="default-exfil-links", detector="exfil_links", where=["definition"], action="warn"),
    ]
    if pii:
        rules.append(
            GuardrailRule(name="default-pii", detector="pii", entities=pii_entities, where=["result"], action="redact")
        )
    return rules


DEFAULT_RULES: Final = tuple(r.name for r in _default_rules(True, sorted(PII_ENTITIES)))


class GuardrailsSection(_Strict):
    """The `guardrails` section of the configuration file."""

    defaults: bool = True
    """The built-in rules: credentials in arguments and results redacted, injection markers, hidden
    Unicode and exfiltration links in tool, prompt and template definitions flagged."""
    pii: bool = False
    """Also redact personal data (`pii_entities`) in results: the `default-pii` rule."""
    pii_entities: list[str] = Field(default_factory=lambda: sorted(PII_ENTITIES))
    rules: Annotated[list[GuardrailRule], named_once("rule")] = Field(default_factory=list)
    arguments: Literal["refuse", "warn"] = "refuse"
    """What a rule that would redact does to a call's arguments: `refuse` the call with an error
    naming the rule and the field, or `warn` (record it and send the arguments as they are). Arguments
    are never altered: a tool run on an input nobody sent is worse than either."""
    max_scan_bytes: Annotated[int, Field(gt=0, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    """The largest payload (as JSON) the built-in detectors read in one piece; a larger one is read in
    pieces of this many characters, a longer string in windows overlapping by 64 KiB, so nothing is
    passed unscanned (docs/guardrails.md, "Large payloads")."""
    definition_secrets: Literal["quarantine", "off"] = "quarantine"
    """Tool, prompt, resource and template definitions that carry a credential (the `secrets`
    detector, as on results): `quarantine` holds them back until an owner approves that version
    (pinned kinds; with pinning off, and for resources, they are withheld while they carry it). One of
    the built-in rules: `defaults: false` turns it off too."""

    @field_validator("pii_entities")
    @classmethod
    def _known_pii(cls, entities: list[str]) -> list[str]:
        unknown = sorted(set(entities) - PII_ENTITIES)
        if unknown:
            raise ValueError(f"unknown pii entities {unknown}; known: {', '.join(sorted(PII_ENTITIES))}")
        return entities


def effective_rules(section: GuardrailsSection) -> list[GuardrailRule]:
    """The rules in force.

    The built-in ones (unless `defaults: false`; the PII one when `pii: true`), each replaced by the
    deployment's rule of the same name, then the deployment's own."""
    own = {rule.name: rule for rule in section.rules}
    builtin = _default_rules(section.pii, section.pii_entities) if section.defaults else []
    if not section.defaults and section.pii:
        builtin = [r for r in _default_rules(True, section.pii_entities) if r.name == "default-pii"]
    merged = [own.pop(rule.name, rule) for rule in builtin]
    return merged + list(own.values())


class GuardrailDecision(BaseModel):
    """A rule that fired, as the audit event records it.

    Never the matched text: the kind of thing found (`entity`) and where (`where`, `path`) are enough to
    act on and safe to store."""

    model_config = ConfigDict(extra="ignore")
    rule: str
    detector: str
    entity: str | None = None
    action: Action
    where: Where
    path: str = ""
    """JSON pointer to the string (or "" for the whole payload); object keys that look like secrets
    are shown as `*`."""
    count: int = 1
    """How many matches of this entity this rule found at this path."""
