"""Guardrails (docs/guardrails.md): checks on tool definitions, arguments and results.

Entry points for the executor's hooks: `Guardrails.compile(section, groups)` once per configuration,
then `Guardrails.inspect(where, Subject(...), payload)` (built-in detectors, synchronous) or
`await Guardrails.ainspect(..., webhooks)` (with external guardrails), each returning an
`Inspection`: the action, the payload to pass on (redacted when a rule redacted) and the decisions
to record. Configuration and the decision record are the contract in `libs.common.contracts.guardrails`.
"""

from .base import Detector, Finding, Subject
from .deny import DenyDetector
from .engine import Guardrails, Inspection
from .injection import ExfilLinksDetector, HiddenUnicodeDetector, InjectionDetector, visible_text
from .pii import PiiDetector
from .secrets import SecretsDetector
from .webhook import WebhookClient, WebhookVerdict

__all__ = [
    "DenyDetector",
    "Detector",
    "ExfilLinksDetector",
    "Finding",
    "Guardrails",
    "HiddenUnicodeDetector",
    "InjectionDetector",
    "Inspection",
    "PiiDetector",
    "SecretsDetector",
    "Subject",
    "WebhookClient",
    "WebhookVerdict",
    "visible_text",
]
