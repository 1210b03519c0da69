"""Injection markers: text aimed at the model rather than the user, in definitions and results.

Three detectors, each with its own entities (`libs.common.contracts.guardrails`):

- `injection`: instructions to the model: overriding its instructions, hiding something from the
  user, prompt-template and `<IMPORTANT>` tags, role hijacks, reading key files, redirecting mail or
  data to a fixed address, "otherwise the tool will not work" traps. Phrases are matched after
  invisible characters are dropped and Unicode tag characters decoded, so `ig\\u200bnore previous
  instructions` and tag-smuggled text are read as the model would read them.
- `hidden_unicode`: characters a person does not see: Unicode tags (U+E0000–E007F, except a flag
  emoji's), bidirectional controls (Trojan Source), zero-width and filler characters placed to split
  words or in runs, and variation-selector runs (data hidden after an emoji).
- `exfil_links`: markdown and HTML images (fetched by the client without a click) and markdown links
  whose URL carries data out: template placeholders (`{conversation}`), a data-ish parameter
  (`?data=`, `?q=`… with a value), or a long high-entropy value.

They are phrase and code-point checks, not a classifier: they catch the published tool-poisoning
and smuggling shapes (tests/data/guardrails/attacks.jsonl) and leave prose that merely talks about
users, instructions or images alone. What needs judgment goes to an external guardrail (webhook).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from .base import EntityDetector, Finding, Scan, any_in, shannon_entropy

__all__ = ["ExfilLinksDetector", "HiddenUnicodeDetector", "InjectionDetector", "visible_text"]

_I = re.IGNORECASE
_PHRASES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    (
        "override",
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,30}?\b(?:all|any|the|your|previous|prior|above"
            r"|earlier|preceding|original|system|safety|existing|developer)\b[^.\n]{0,20}?\b(?:instructions?|prompts?"
            r"|rules|directions|directives|guidelines|guardrails|context|constraints|policies|messages)\b",
            _I,
        ),
    ),
    (
        "concealment",
        re.compile(
            r"\b(?:do not|don't|dont|never|must not|should not|without)\b[^.\n]{0,25}?\b(?:tell(?:ing)?|inform(?:ing)?"
            r"|mention(?:ing)?|reveal(?:ing)?|notify(?:ing)?|alert(?:ing)?|disclos(?:e|ing)|let(?:ting)?)\b"
            r"[^.\n]{0,20}?\b(?:the user|users?|the human|anyone|them)\b"
            r"|\b(?:the )?user (?:must|should|need|will|may) (?:not|never) (?:know|see|notice|be told|find out|learn)\b"
            r"|\b(?:hide|conceal|keep)\b[^.\n]{0,25}?\b(?:from the user|secret from)\b"
            r"|\bcould (?:even )?upset the user\b"
            r"|\b(?:silently|secretly|covertly|quietly)\b[^.\n]{0,30}?\b(?:send|forward|copy|upload|include|add|bcc"
            r"|exfiltrate|read|post|leak)\b",
            _I,
        ),
    ),
    (
        "instruction_tags",
        re.compile(
            r"<\s*/?\s*(?:important|system|instructions?|hidden|secret|admin|override|critical|sys)\s*>"
            r"|<\|(?:im_start|im_end|system|endoftext|user|assistant)\|>|\[/?INST\]|<<SYS>>"
            r"|\bBEGIN (?:SYSTEM|ADMIN) (?:PROMPT|INSTRUCTIONS?)\b",
            _I,
        ),
    ),
    (
        "role_hijack",
        re.compile(
            r"\byou are now (?:a |an |in |the )?(?:dan\b|developer mode|unrestricted|jailbroken|admin|root|unfiltered"
            r"|uncensored|free from)"
            r"|\bfrom now on,? (?:you|the assistant)\b"
            r"|\b(?:new|updated|real|actual|hidden|secret) (?:system )?instructions?\s*:"
            r"|\b(?:enable|activate|enter)(?:d)? (?:developer|god|debug|admin|jailbreak|dan) mode\b"
            r"|\bif you are an? (?:ai|llm|language model|assistant|agent|bot)\b"
            r"|\b(?:ai|llm) (?:agents?|assistants?|models?) (?:reading|processing|summari[sz]ing) this\b",
            _I,
        ),
    ),
    (
        "sensitive_file",
        re.compile(
            r"\b(?:read|cat|open|load|send|pass|include|upload|attach|provide|copy|fetch|access|leak|exfiltrate"
            r"|extract|post|append|paste|get)\b[^\n]{0,80}?(?:~/\.ssh|\.ssh/|\bid_rsa\b|\bid_ed25519\b|\bid_ecdsa\b"
            r"|\.aws/credentials|\.aws/config|\bmcp\.json\b|claude_desktop_config\.json|/etc/passwd|/etc/shadow"
            r"|\.git-credentials|\.netrc\b|\.npmrc\b|\.pypirc\b|\.kube/config|\.docker/config\.json"
            r"|(?<![\w.])\.env\b|\.bash_history|\.zsh_history|~/\.cursor/|~/\.config/)",
            _I,
        ),
    ),
    (
        "redirect",
        re.compile(
            r"\bside effects? on\b[^.\n]{0,40}?\btools?\b"
            r"|\bwhen (?:this tool is (?:available|present|loaded)|the [\w.`'\"-]+ tool is (?:called|used|invoked))\b"
            r"|\b(?:all|every|any)\s+(?:e-?mails?|messages?|payments?|transfers?|requests?|files?|data)\b[^.\n]{0,40}?"
            r"\b(?:must|should|will|shall)\b[^.\n]{0,20}?\b(?:be\s+)?(?:sent|forwarded|redirected|copied|routed"
            r"|bcc'?e?d|cc'?e?d|uploaded|posted)\s+to\b"
            r"|\b(?:always|must|should|also|silently|secretly)\s+(?:also\s+)?(?:bcc|cc|forward|send|copy|mail|email)\b"
            r"[^.\n]{0,60}?[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+",
            _I,
        ),
    ),
    (
        "prerequisite_trap",
        re.compile(
            r"\botherwise the tool (?:will not|won't|will fail to|cannot|can't) work\b"
            r"|\bpass (?:its|the|their|this|that) (?:full |entire |complete )?contents? (?:as|in|into|to)\b"
            r"|\bbefore (?:using|calling|invoking) (?:this|any) tool\b[^.\n]{0,30}?\b(?:read|send|fetch|retrieve"
            r"|include|pass|provide)\b",
            _I,
        ),
    ),
)
_PHRASE_ANCHORS: Final = (
    *("ignor", "disregard", "forget", "overrid", "bypass", "not ", "n't", "never", "without", "user", "upset"),
    *("silently", "secretly", "covertly", "quietly", "<", "[inst]", "you are now", "from now on", "instruction"),
    *("mode", "if you are a", "this", "~/", "id_rsa", "id_ed", ".ssh", ".env", "mcp.json", "/etc/", ".aws"),
    *("side effect", "when ", "must", "should", "will", "always", "also", "otherwise", "pass ", "before "),
)

# --------------------------------------------------------------------------- hidden characters

_TAGS: Final = re.compile("[\U000e0000-\U000e007f]")
_FLAG: Final = re.compile(
    "\U0001f3f4[\U000e0061-\U000e007a]{2}[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,3}\U000e007f"
)  # an ISO 3166-2 subdivision flag (England, Scotland, Wales): two letters, then one to three letters or digits
_BIDI: Final = re.compile("[\u202a-\u202e\u2066-\u2069]")
_INVISIBLE_SET: Final = (
    "\u200b\u2060\u2061\u2062\u2063\u2064"  # zero-width space, word joiner, invisible operators
    "\u180e\u115f\u1160\u3164\uffa0\u034f\u17b4\u17b5\u2800\ufeff"  # fillers and blanks, a misplaced BOM
)
_INVISIBLE: Final = re.compile(f"[{_INVISIBLE_SET}]")
_INVISIBLE_MISUSE: Final = re.compile(f"[{_INVISIBLE_SET}]{{2,}}|(?<=[A-Za-z])[{_INVISIBLE_SET}](?=[A-Za-z])")
_SELECTORS: Final = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}|[\U000e0100-\U000e01ef]")
_DROP: Final = re.compile(
    f"[{_INVISIBLE_SET}\u200c\u200d\u200e\u200f\u202a-\u202e\u2066-\u2069\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)


def visible_text(text: str) -> str:
    """`text` as a model reads it.

    Invisible characters dropped, Unicode tag characters decoded to the ASCII they stand for (a flag
    emoji's tags left alone)."""
    if text.isascii():
        return text
    text = _DROP.sub("", _FLAG.sub("", text))
    return _TAGS.sub(lambda m: chr(ord(m.group()) - 0xE0000) if 0x20 <= ord(m.group()) - 0xE0000 < 0x7F else "", text)


class InjectionDetector(EntityDetector):
    name = "injection"
    table = _PHRASES

    def prepare(self, blob: str, lower: str) -> Scan | None:
        if blob.isascii() and not any_in(_PHRASE_ANCHORS, lower):
            return None
        return self._scan

    def _scan(self, text: str, key: str | None) -> list[Finding]:
        del key
        read = visible_text(text)
        whole = read != text  # spans of the read text do not map back: report the whole string
        found = []
        for entity, regex in self.rules:
            for match in regex.finditer(read):
                start, end = (0, len(text)) if whole else match.span()
                found.append(Finding(self.name, entity, start, end))
        return found


class HiddenUnicodeDetector(EntityDetector):
    name = "hidden_unicode"

    def prepare(self, blob: str, lower: str) -> Scan | None:
        del lower
        return None if blob.isascii() else self._scan

    def _scan(self, text: str, key: str | None) -> list[Finding]:
        del key
        if text.isascii():
            return []
        found = []
        if "unicode_tags" in self.entities and _TAGS.search(text):
            flags = [m.span() for m in _FLAG.finditer(text)]
            for match in _TAGS.finditer(text):
                if not any(lo <= match.start() < hi for lo, hi in flags):
                    found.append(Finding(self.name, "unicode_tags", *match.span()))
        checks = (("bidi_control", _BIDI), ("invisible_chars", _INVISIBLE_MISUSE), ("variation_selectors", _SELECTORS))
        for entity, regex in checks:
            if entity in self.entities:
                found.extend(Finding(self.name, entity, *m.span()) for m in regex.finditer(text))
        return found


# --------------------------------------------------------------------------- exfiltration links

_IMAGE_MD: Final = re.compile(r"!\[[^\]\n]{0,300}\]\(\s*<?(https?://[^)\s>]+)")
_IMAGE_HTML: Final = re.compile(r"<img\b[^>]{0,300}?\bsrc\s*=\s*[\"']?(https?://[^\"'\s>]+)", _I)
_LINK_MD: Final = re.compile(
    r"(?<!!)\[[^\]\n]{0,300}\]\(\s*<?(https?://[^)\s>]+)|^\s{0,3}\[[^\]\n]+\]:\s*(https?://\S+)", re.M
)
_LINKS: Final = (
    ("markdown_image", _IMAGE_MD, True),
    ("html_image", _IMAGE_HTML, True),
    ("markdown_link", _LINK_MD, False),
)
_TEMPLATE: Final = re.compile(r"[{}<>$]|%7[bd]|%24|%3c|\[[A-Z_]{3,}\]", _I)
_DATA_PARAMS: Final = frozenset(
    {"data", "d", "q", "secret", "key", "content", "text", "msg", "message", "history", "chat", "conversation"}
    | {"payload", "leak", "exfil", "info", "context", "memory", "prompt", "body", "creds", "credentials", "p"}
)
_SIGNING_PARAMS: Final = frozenset(
    {"signature", "sig", "jwt", "token", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "se", "sp"}
    | {"sv", "policy", "key-pair-id", "expires", "hmac", "x-goog-signature", "x-goog-credential", "st", "integrity"}
)


def _carries_data(url: str, image: bool) -> bool:
    parts = urlsplit(url)
    if _TEMPLATE.search(parts.path) or _TEMPLATE.search(parts.query):
        return True
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        name = name.lower()
        if name in _SIGNING_PARAMS:
            continue
        if name in _DATA_PARAMS and len(value) >= (8 if image else 24):
            return True
        if len(value) >= 64 and shannon_entropy(unquote(value)) > 4.2:
            return True
    return False


class ExfilLinksDetector(EntityDetector):
    name = "exfil_links"
    table = _LINKS

    def prepare(self, blob: str, lower: str) -> Scan | None:
        del blob
        return self._scan if "http" in lower and ("](" in lower or "<img" in lower or "]:" in lower) else None

    def _scan(self, text: str, key: str | None) -> list[Finding]:
        del key
        if "http" not in text:
            return []
        found = []
        for entity, regex, image in self.rules:
            for match in regex.finditer(text):
                url = match.group(1) or match.group(match.lastindex or 1)
                if url and _carries_data(url, image):
                    found.append(Finding(self.name, entity, *match.span()))
        return found
