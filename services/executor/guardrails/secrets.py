"""The credentials detector.

Cloud keys, service tokens, private keys, JWTs, passwords in URLs and in assignments, offline and without
a model.

Formats follow the providers' documented token shapes (the same families detect-secrets and gitleaks
know). detect-secrets itself is not used: its 27 plugins cost 17 ms per 10 KB called directly and
125 ms through `scan_line` (docs/benchmarks.md), against a budget of 1 ms; here every pattern has
literal anchors, checked once per payload, and a pattern runs only on the strings that hold one.
Generic "high-entropy string" detection is left out on purpose: hashes, UUIDs, base64 data and
pagination cursors fill ordinary results, and it would flag them. Entropy is used only where a
keyword (`password`, `api_key`, an AWS key id nearby) already says a secret is expected.

No character class may cross a quote or a backslash, so a redaction inside a string that is itself
JSON text (a file's content) never breaks that text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import ahocorasick_rs

from .base import EntityDetector, Finding, Scan, mixed_classes, shannon_entropy

__all__ = ["PATTERNS", "SecretsDetector"]

Validator = Callable[[re.Match[str]], tuple[int, int] | None]
"""The span to redact for a match, or None when the match is not a secret after all."""


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity: str
    anchors: tuple[str, ...]
    regex: re.Pattern[str]
    validate: Validator | None = None
    lower: bool = False
    """Anchors are lower-case, looked for in the lower-cased payload."""
    before: re.Pattern[str] | None = None
    """A character that may not precede a match (the pattern's leading look-behind, checked here)."""
    needs: str = ""
    """Text every match holds besides its anchor: a payload without it does not wake the pattern."""


def _group(n: int) -> Validator:
    return lambda m: m.span(n)


_PLACEHOLDERS: Final = re.compile(
    r"(?i)\A(?:\**|x+|\.+|-+|_+|#+|0+|1234\w*|(?:my|your|the|example|sample|dummy|fake|test|some)[_-]?\w*"
    r"|pass(?:word)?|passwd|pwd|secret|token|changeme|redacted|hidden|none|null|nil|true|false|undefined"
    r"|string|str|required|optional|value|\w*_here|\[redacted[^\]]*\]|env|environ)\Z"
    r"|\A(?:\$\{.*\}|\$\(.*\)|<.*>|\{\{.*\}\}|%\(?\w*\)?s|\$[A-Za-z_]\w*)\Z"
)
_TEMPLATED: Final = re.compile(r"\{\{.*?\}\}|\$\{[^}]*\}|%\(\w+\)s")
"""A value with a template in it (`{{ vault_password }}`, `${DB_PASSWORD}`) is filled in elsewhere."""
_EXPRESSION: Final = re.compile(
    r"[(){}\[\]<>$]"  # a call, an index, a template, a shell or env reference
    r"|\A[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+\Z"  # a dotted name: process.env.X, self.password
    r"|\A[A-Za-z_]+\Z"  # a bare name without digits: a variable, a word
)


def _credible(value: str, *, password: bool, quoted: bool = True) -> bool:
    """Whether a value next to a secret-ish keyword looks like a real credential.

    Not a placeholder, not (unquoted, in code) an expression or a variable, and random enough for what
    the key says."""
    if _PLACEHOLDERS.match(value) or _TEMPLATED.search(value) or (not quoted and _EXPRESSION.search(value)):
        return False
    if password:
        return len(value) >= 6 and mixed_classes(value) >= 2
    if _IDENTIFIER.match(value) or any(c.isspace() for c in value) or _cursor(value):
        return False
    return len(value) >= 12 and mixed_classes(value) >= 2 and shannon_entropy(value) >= 3.0


_IDENTIFIER: Final = re.compile(
    r"(?i)\A(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # a UUID
    r"|[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"  # the same, dashes dropped
    r"|[\d._:-]+"  # a counter, a timestamp, a version
    r"|[a-z]+[_-]?\d{1,6}(?:[_-][a-z]+[_-]?\d{1,6})*)\Z"  # `page_2`, `call-17-attempt-0`
)
"""Values under a `token` key that name something rather than open it: request ids, page counters."""
_B64_CURSOR: Final = re.compile(r"\A[A-Za-z0-9+/_\-]{8,}={0,2}\Z")


def _cursor(value: str) -> bool:
    """An opaque pagination cursor.

    Base64 of a JSON object or list (`eyJwYWdlIjoyfQ==`), which is where an API keeps its offset, not a
    credential."""
    if not _B64_CURSOR.match(value) or not value.startswith(("ey", "W3", "WyI")):
        return False
    body = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    return decoded[:1] in ("{", "[") and decoded.rstrip()[-1:] in ("}", "]")


_KEYWORD: Final = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|client[_-]?secret|auth[_-]?token|access[_-]?token|refresh[_-]?token|bearer[_-]?token|session[_-]?token"
    r"|api[_-]?token|token|credentials?)"
)
_NOT_SECRET_KEY: Final = re.compile(
    r"(?i)page|next|cursor|continuation|sync|resume|count|limit|max|min|type|length|size|expir|usage|policy"
    r"|hint|name|url|uri|path|file|format|version|hash|sha|digest|fingerprint|field|id$|ids$|_id|enabled|required"
    r"|rotation|created|updated|last|scope|endpoint|header|prefix|description|label|kind|mode|location|ref$|_ref"
)
_KEY_IS_SECRET: Final = re.compile(rf"(?i){_KEYWORD}\Z")
_PASSWORDISH: Final = re.compile(r"(?i)pass|pwd")
_KEY_REST: Final = re.compile(r"[a-z0-9_.\-]{0,60}")
_KEY_BEFORE: Final = re.compile(r"[a-z0-9_.\-]*\Z")
_ASSIGN_ANCHORS: Final = ("pass", "pwd", "secret", "token", "credential", "key")
_KEYWORD_ANCHORS: Final = (
    *("pass", "pwd", "secret", "token", "credential", "apikey", "api_key", "api-key"),
    *("accesskey", "access_key", "access-key", "privatekey", "private_key", "private-key"),
)
"""What a payload must contain for any keyword to be there (`key` alone is everywhere)."""
_ASSIGN_TAIL: Final = re.compile(r"([\"']?)[ \t]*(?::|=|=>|:=)[ \t]*([\"'`]?)([^\s\"'`,;\\]{6,200})")


def _assignments(text: str) -> list[tuple[int, int]]:
    """Values of `<…keyword> = value` (env files, YAML, code, JSON in text).

    The keyword is found with plain substring search and the key read around it: a regex of "key
    characters, then one of sixteen keywords" would be tried at every position of the text, 20 times
    slower."""
    lower = text.lower()
    spans: list[tuple[int, int]] = []
    ends: set[int] = set()
    for anchor in _ASSIGN_ANCHORS:
        at = lower.find(anchor)
        while at != -1:
            end = _KEY_REST.match(lower, at + len(anchor)).end()  # type: ignore[union-attr]  # {0,60} always matches
            if end not in ends:
                ends.add(end)
                tail = _ASSIGN_TAIL.match(text, end)
                if tail is not None:
                    start = _KEY_BEFORE.search(lower, max(0, at - 40), at).start()  # type: ignore[union-attr]
                    key = lower[start:end]
                    if _KEY_IS_SECRET.search(key) and not _NOT_SECRET_KEY.search(key):
                        quoted = bool(tail.group(1) or tail.group(2))
                        if _credible(tail.group(3), password=bool(_PASSWORDISH.search(key)), quoted=quoted):
                            spans.append(tail.span(3))
            at = lower.find(anchor, end)
    return spans


def _url_password(m: re.Match[str]) -> tuple[int, int] | None:
    return m.span(2) if _credible(m.group(2), password=True, quoted=False) else None


_B64_40: Final = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _aws_secret(value: str) -> bool:
    return mixed_classes(value) >= 3 and shannon_entropy(value) >= 4.0


def _aws_keyword_secret(m: re.Match[str]) -> tuple[int, int] | None:
    return m.span(1) if _aws_secret(m.group(1)) else None


_PEM_END: Final = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY: Final = re.compile(r"(?:[A-Za-z0-9+/=\s:,.\-]|\\[nr])*")


def _pem_block(m: re.Match[str]) -> tuple[int, int]:
    """From the BEGIN line to its END line, or to where the key material stops (a block cut short)."""
    text = m.string
    end = _PEM_END.search(text, m.end(), m.end() + 20_000)
    if end is not None:
        return m.start(), end.end()
    body = _PEM_BODY.match(text, m.end())
    return m.start(), body.end() if body else m.end()


_LEADING_LOOKBEHIND: Final = re.compile(r"\A\(\?<!\[((?:\\.|[^\]])*)\]\)")


def _p(
    entity: str,
    anchors: Sequence[str],
    regex: str,
    validate: Validator | None = None,
    lower: bool = False,
    needs: str = "",
) -> _Pattern:
    # A leading look-behind stops the regex engine from jumping to the pattern's literal start (ghp_,
    # AKIA): with it, matching a 10 KB string costs 100 µs; without it, 4 µs. It is checked on the
    # (rare) matches instead.
    lookbehind = _LEADING_LOOKBEHIND.match(regex)
    before = re.compile(f"[{lookbehind.group(1)}]") if lookbehind else None
    body = regex[lookbehind.end() :] if lookbehind else regex
    return _Pattern(entity, tuple(anchors), re.compile(body), validate, lower, before, needs)


_NA: Final = r"(?![A-Za-z0-9_\-])"
"""Not followed by another token character."""
_NB: Final = r"(?<![A-Za-z0-9_\-])"
"""Not preceded by one."""

PATTERNS: Final[tuple[_Pattern, ...]] = (
    _p(
        "aws_access_key_id",
        ["AKIA", "ASIA", "ABIA", "ACCA"],
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])",
    ),
    _p(
        "aws_secret_access_key",
        ["secret_access_key", "secretaccesskey", "aws_secret", "secret-access-key"],
        r"(?i:aws_?secret(?:_access)?_?key|secret_?access_?key|secret-access-key)[\"']?\s*(?::|=|=>|:=)\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        _aws_keyword_secret,
        lower=True,
    ),
    _p("gcp_api_key", ["AIza"], rf"{_NB}AIza[0-9A-Za-z_\-]{{35}}{_NA}"),
    _p("gcp_oauth_client_secret", ["GOCSPX-"], rf"GOCSPX-[A-Za-z0-9_\-]{{28}}{_NA}"),
    _p("gcp_access_token", ["ya29."], r"(?<![A-Za-z0-9])ya29\.[0-9A-Za-z_\-]{30,}"),
    _p(
        "azure_storage_key",
        ["AccountKey=", "SharedAccessKey="],
        r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{40,88}={0,2})",
        _group(1),
    ),
    _p(
        "azure_sas_token",
        ["sig="],
        r"[?&;]sv=[0-9-]{10}[^\s\"'\\]{0,400}?[?&;]sig=([A-Za-z0-9%+/=]{40,})",
        _group(1),
    ),
    _p(
        "azure_sas_token",
        ["sig="],
        r"[?&;]sig=([A-Za-z0-9%+/=]{40,})(?=[^\s\"'\\]{0,400}?[?&;]sv=[0-9-]{10})",
        _group(1),
    ),
    _p(
        "azure_client_secret",
        ["Q~"],
        r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])",
    ),
    _p("github_token", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], rf"{_NB}gh[pousr]_[A-Za-z0-9]{{36,251}}{_NA}"),
    _p("github_token", ["github_pat_"], rf"{_NB}github_pat_[A-Za-z0-9_]{{80,255}}{_NA}"),
    _p(
        "gitlab_token",
        ["glpat-", "gldt-", "glrt-", "glptt-", "glcbt-", "gloas-", "glft-", "glsoat-", "GR1348941"],
        rf"{_NB}(?:(?:glpat|gldt|glrt|glptt|glcbt|gloas|glft|glsoat)-|GR1348941)[A-Za-z0-9_\-.]{{20,}}",
    ),
    _p("slack_token", ["xox"], rf"{_NB}xox[abposre]-(?:\d+-)?[0-9A-Za-z\-]{{10,}}"),
    _p("slack_token", ["xapp-"], rf"{_NB}xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{{32,}}"),
    _p(
        "slack_webhook",
        ["hooks.slack.com/"],
        r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9_/+\-]{20,})",
        _group(1),
    ),
    _p(
        "stripe_key",
        ["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
        rf"{_NB}(?:[rs]k_(?:live|test)_[0-9A-Za-z]{{24,247}}|whsec_[A-Za-z0-9+/]{{32,}}){_NA}",
    ),
    _p(
        "openai_key",
        ["sk-proj-", "sk-svcacct-", "sk-admin-", "T3BlbkFJ"],
        rf"{_NB}sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{{40,}}|[A-Za-z0-9]{{20}}T3BlbkFJ[A-Za-z0-9]{{20}})",
    ),
    _p("anthropic_key", ["sk-ant-"], rf"{_NB}sk-ant-(?:api|admin|oat|ort)\d{{2}}-[A-Za-z0-9_\-]{{80,120}}"),
    _p("huggingface_token", ["hf_"], rf"{_NB}hf_[A-Za-z]{{34,40}}{_NA}"),
    _p("npm_token", ["npm_"], rf"{_NB}npm_[A-Za-z0-9]{{36}}{_NA}"),
    _p("pypi_token", ["pypi-AgE"], r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
    _p("sendgrid_key", ["SG."], rf"{_NB}SG\.[A-Za-z0-9_\-]{{22}}\.[A-Za-z0-9_\-]{{43}}{_NA}"),
    _p("telegram_bot_token", [":AA"], rf"(?<![0-9])\d{{8,10}}:AA[A-Za-z0-9_\-]{{33}}{_NA}"),
    _p("digitalocean_token", ["dop_v1_", "doo_v1_", "dor_v1_"], r"do[opr]_v1_[a-f0-9]{64}"),
    _p("shopify_token", ["shpat_", "shpca_", "shppa_", "shpss_"], r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    _p("vault_token", ["hvs.", "hvb."], rf"{_NB}hv[sb]\.[A-Za-z0-9_\-]{{24,}}"),
    _p("age_secret_key", ["AGE-SECRET-KEY-1"], r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    _p(
        "private_key",
        ["-----BEGIN"],
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
        _pem_block,
    ),
    _p("jwt", ["eyJ"], r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
    _p(
        "url_password",
        ["://"],
        # possessive: neither class holds the character after it, so giving characters back never finds
        # a match, and a URL without a password fails at once instead of backtracking through its host
        r"://([^\s:/?#@\"'<>\\]{1,128}+):([^\s/?#@\"'<>\\]{1,256}+)@",
        _url_password,
        # the `@` ending the credentials: most texts that hold URLs (links, API rows) have none, and
        # are then not searched at all (~7 µs of a 2 KiB result holding a dozen links)
        needs="@",
    ),
    _p(
        "auth_header",
        ["authorization"],
        r"(?i:(?:proxy-)?authorization)[\"']?\s*[:=]\s*[\"']?(?i:bearer|basic|token|bot)\s+([A-Za-z0-9._~+/\-]{16,}=*)",
        _group(1),
        lower=True,
    ),
)

_AKIA: Final = re.compile(r"(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Z0-9])")
"""A key id (its leading look-behind, `(?<![A-Z0-9])`, is checked on the matches: with it the regex
cannot jump to its literal start, 100 ms per MiB instead of 1)."""
_NOT_BEFORE_KEY_ID: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LEAD: Final = 8
"""How far before its anchor a case-insensitive pattern may start (`proxy-` before `authorization`,
`aws_` before `secret_access_key`)."""


def _near_anchors(pattern: _Pattern, text: str, lower: str | None) -> Iterator[re.Match[str]]:
    """The matches of a case-insensitive pattern, tried only where one of its anchors is.

    Such a regex cannot jump to a literal start, and searching a MiB with it costs ~300 ms, this ~1."""
    lower = text.lower() if lower is None else lower
    if len(lower) != len(text):  # a letter lower-cased into two (`İ`): its positions are not the text's
        yield from pattern.regex.finditer(text)
        return
    starts: set[int] = set()
    for anchor in pattern.anchors:
        at = lower.find(anchor)
        while at != -1:
            starts.update(range(max(0, at - _LEAD), at + 1))
            at = lower.find(anchor, at + 1)
    end = -1
    for start in sorted(starts):
        if start < end:
            continue
        match = pattern.regex.match(text, start)
        if match is not None:
            end = match.end()
            yield match


def _distinct(found: list[Finding]) -> list[Finding]:
    """One finding per secret.

    A span found twice (an AWS secret by its keyword and beside its key id) counts once, and the generic
    `password_assignment` yields to a named format it overlaps."""
    named = [f for f in found if f.entity != "password_assignment"]
    out: list[Finding] = []
    seen: set[tuple[int, int]] = set()
    for finding in found:
        if (finding.start, finding.end) in seen:
            continue
        if finding.entity == "password_assignment" and any(
            n.start < finding.end and finding.start < n.end for n in named
        ):
            continue
        seen.add((finding.start, finding.end))
        out.append(finding)
    return out


class SecretsDetector(EntityDetector):
    """Credentials; `entities` narrows it (all of `SECRET_ENTITIES` by default)."""

    name = "secrets"

    def __init__(self, entities: frozenset[str] | None = None) -> None:
        super().__init__(entities)
        self._patterns = tuple(p for p in PATTERNS if p.entity in self.entities)
        self._pairs = "aws_secret_access_key" in self.entities
        self._keyed = "password_assignment" in self.entities
        # every anchor, lower-cased, in one automaton: one pass over the payload finds which are there
        # (76 substring searches of a 10 KB payload cost ~450 µs, pyahocorasick's automaton ~60 µs, this
        # one, in Rust, a quarter of that: ~5 µs on a 2 KiB result)
        anchors = sorted({a.lower() for p in self._patterns for a in p.anchors} | set(_KEYWORD_ANCHORS))
        self._anchors = ahocorasick_rs.AhoCorasick(anchors)
        # which patterns each found anchor may wake: the patterns are picked from the few anchors a
        # payload holds, not by testing every pattern's anchors against them
        self._woken: dict[str, list[tuple[int, str, bool, str]]] = {}
        for index, pattern in enumerate(self._patterns):
            for anchor in pattern.anchors:
                self._woken.setdefault(anchor.lower(), []).append((index, anchor, pattern.lower, pattern.needs))

    def prepare(self, blob: str, lower: str) -> Scan | None:
        try:
            found = self._anchors.find_matches_as_strings(lower, overlapping=True)
        except UnicodeEncodeError:  # lone surrogates, which the automaton's UTF-8 cannot hold: the anchors
            # are ASCII and only whether they are there counts, so the surrogates may stand as U+FFFD
            plain = lower.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            found = self._anchors.find_matches_as_strings(plain, overlapping=True)
        if not found:  # the usual payload: no anchor, so no set to build
            return None
        present = set(found)  # in C: a MiB of prose holds thousands of anchors
        woken: set[int] = set()
        for low in present:
            for index, anchor, lowered, needs in self._woken.get(low, ()):
                # a case-sensitive anchor found lower-cased is checked in the payload itself
                if index not in woken and (lowered or anchor in blob) and needs in blob:
                    woken.add(index)
        active = tuple(self._patterns[index] for index in sorted(woken))  # the patterns' own order
        assign = self._keyed and not present.isdisjoint(_KEYWORD_ANCHORS)
        if not active and not assign:
            return None
        return lambda text, key: self._scan(active, assign, text, key)

    def _scan(self, active: Sequence[_Pattern], assign: bool, text: str, key: str | None) -> list[Finding]:
        found: list[Finding] = []
        if key is not None and self._keyed and _KEY_IS_SECRET.search(key) and not _NOT_SECRET_KEY.search(key):
            if _credible(text, password=bool(_PASSWORDISH.search(key))):  # {"password": "…"}: the whole value
                found.append(Finding(self.name, "password_assignment", 0, len(text)))
        lower: str | None = None
        for pattern in active:
            if pattern.needs not in text:  # "" is in every text
                continue
            if pattern.lower:
                lower = text.lower() if lower is None else lower
                if not any(a in lower for a in pattern.anchors):
                    continue
            elif not any(a in text for a in pattern.anchors):
                continue
            for match in _near_anchors(pattern, text, lower) if pattern.lower else pattern.regex.finditer(text):
                start = match.start()
                if pattern.before is not None and start and pattern.before.match(text, start - 1):
                    continue
                span = pattern.validate(match) if pattern.validate is not None else match.span()
                if span is not None and span[1] > span[0]:
                    found.append(Finding(self.name, pattern.entity, *span))
        if assign:
            found.extend(Finding(self.name, "password_assignment", *span) for span in _assignments(text))
        if self._pairs and ("AKIA" in text or "ASIA" in text):
            found.extend(self._aws_pairs(text))
        return _distinct(found) if len(found) > 1 else found

    def _aws_pairs(self, text: str) -> list[Finding]:
        """An AWS secret access key with no keyword: 40 base64 characters near an access key id."""
        found = []
        for key_id in _AKIA.finditer(text):
            if key_id.start() and text[key_id.start() - 1] in _NOT_BEFORE_KEY_ID:
                continue
            lo, hi = max(0, key_id.start() - 300), min(len(text), key_id.end() + 300)
            for candidate in _B64_40.finditer(text, lo, hi):
                if _aws_secret(candidate.group()):
                    found.append(Finding(self.name, "aws_secret_access_key", *candidate.span()))
        return found
