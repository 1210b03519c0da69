"""The personal data detector.

E-mail addresses, phone numbers, payment cards (Luhn and issuer prefixes), IBANs (ISO 13616 length and
mod-97 checksum), US social security numbers and UK national insurance numbers. Off by default
(`guardrails.pii: true` turns it on); `entities` narrows it.

Checksums do the work a model would otherwise do: a 16-digit order number is not a card unless it
passes Luhn and starts like one, and a string shaped like an IBAN is one only if its checksum holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from .base import EntityDetector, Finding, Scan

__all__ = ["PiiDetector", "iban_valid", "luhn_valid"]

_DIGIT_OR_AT: Final = re.compile(r"[0-9@]")
_DIGIT: Final = re.compile(r"[0-9]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# ISO 13616 lengths of the countries that issue IBANs
_IBAN_LENGTHS: Final = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "CR", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "DE", "GB", "GE", "IE", "ME", "RS"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
}


def iban_valid(iban: str) -> bool:
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group())
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1 or not luhn_valid(digits):
        return False
    two, four = int(digits[:2]), int(digits[:4])
    return (
        digits[0] == "4"  # Visa
        or 51 <= two <= 55
        or 2221 <= four <= 2720  # Mastercard
        or two in (34, 37)  # American Express
        or four == 6011
        or two == 65
        or 644 <= int(digits[:3]) <= 649  # Discover
        or 3528 <= four <= 3589  # JCB
        or two in (36, 38)
        or 300 <= int(digits[:3]) <= 305  # Diners Club
        or two == 62  # UnionPay
        or four in (5018, 5020, 5038, 6304, 6759, 6761, 6763)  # Maestro
    )


def _iban(match: re.Match[str]) -> bool:
    return iban_valid(match.group().replace(" ", ""))


_FILE_TLDS: Final = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "ts", "css", "map", "json"})


def _email(match: re.Match[str]) -> bool:
    local, _, domain = match.group().rpartition("@")
    return local != "git" and domain.rsplit(".", 1)[-1].lower() not in _FILE_TLDS


def _phone(match: re.Match[str]) -> bool:
    return 8 <= sum(c.isdigit() for c in match.group()) <= 15


_Check = Callable[[re.Match[str]], bool]

_PATTERNS: Final[tuple[tuple[str, str | None, re.Pattern[str], _Check | None], ...]] = (
    (
        "email",
        "@",
        re.compile(
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*"
            r"\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
        ),
        _email,
    ),
    (
        "phone",
        None,
        re.compile(
            r"(?<![\w+.\-/])(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]\d{2,8}){1,4}"
            r"|\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4})(?![\w.\-/])"
        ),
        _phone,
    ),
    ("payment_card", None, re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){12,18}(?![\w\-.])"), _card),
    ("iban", None, re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"), _iban),
    ("us_ssn", "-", re.compile(r"(?<![\w\-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w\-])"), None),
    (
        "uk_nino",
        None,
        re.compile(
            r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
            r"(?![A-Za-z0-9])"
        ),
        None,
    ),
)


class PiiDetector(EntityDetector):
    name = "pii"
    table = _PATTERNS

    def prepare(self, blob: str, lower: str) -> Scan | None:
        del lower
        if not any(anchor is None or anchor in blob for _, anchor, _, _ in self.rules):
            return None
        if _DIGIT_OR_AT.search(blob) is None:
            return None
        return self._scan

    def _scan(self, text: str, key: str | None) -> list[Finding]:
        del key
        found = []
        has_digit = _DIGIT.search(text) is not None
        for entity, anchor, regex, check in self.rules:
            if (anchor is not None and anchor not in text) or (entity != "email" and not has_digit):
                continue
            for match in regex.finditer(text):
                if check is None or check(match):
                    found.append(Finding(self.name, entity, *match.span()))
        return found
