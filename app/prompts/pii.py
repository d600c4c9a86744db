"""Likely personal data in prompt text: detection by pattern plus checks, and redaction.

Kinds: email, phone, card (Luhn-valid), account (IBAN with its checksum, numbers after
'account'/'acct'/'IBAN'/'routing', US SSNs), address (street number + name + street type,
PO boxes), name (capitalised words after a greeting, a sign-off or 'my name is'), ip (v4, v6).
Detection aims at recall: a false positive costs an admin a click, a miss leaks data.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One span of likely personal data."""

    kind: str
    start: int
    end: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored on Prompt.pii_findings."""
        return asdict(self)


# Every quantifier is bounded and no two unbounded runs of one character class sit next to each
# other, so each start position costs a constant amount of backtracking and a scan is linear in
# the text (tests/prompts/test_pii_linear.py checks 10k vs 20k characters of adversarial input).
EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)\s?\d{3}[\s.-]?\d{4}"  # (415) 555-0132
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0132
    r"|0\d{2,4}[\s-]\d{3,4}[\s-]?\d{3,4}"  # 020 7946 0958
    r")(?![\w-])"
)
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]){11,30}\b")
ACCOUNT_CONTEXT = re.compile(
    r"\b(?:account|acct|a/c|iban|routing|sort code|bsb)\b"
    r"(?:\s{0,3}(?:number|no\.?|num|#))?\s{0,3}(?:is|:|#)?\s{0,3}"
    r"(?P<num>[A-Z0-9][A-Z0-9 -]{4,32}[0-9])",
    re.IGNORECASE,
)
SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
STREET_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
    "close|crescent|highway|hwy|parkway|pkwy|square|sq|circle|cir|strasse|straße|allee"
)
ADDRESS = re.compile(
    r"\b\d{1,6}[A-Za-z]?,?\s{1,4}(?:[A-Z][\w'-]{0,30}\.?\s{1,4}){1,4}(?:" + STREET_TYPES + r")\b\.?"
    r"(?:\s{1,4}(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    r"(?:,?\s{1,4}(?:apt|apartment|suite|unit|flat)\.?\s{0,4}#?\w{1,10})?",
    re.IGNORECASE,
)
PO_BOX = re.compile(r"\bP\.?\s?O\.?\s{1,4}Box\s{1,4}\d{1,10}\b", re.IGNORECASE)
_NAME = r"(?P<name>[A-Z][a-z'’-]{1,30}(?:[ \t]{1,4}[A-Z][a-z'’-]{1,30}){0,2})"
# The cue words match in any case; the name itself must be capitalised.
GREETINGS = tuple(
    re.compile(cue + _NAME)
    for cue in (
        r"\b(?i:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening))[ \t]{0,4},?[ \t]{1,4}"
        r"(?:(?i:mr|mrs|ms|miss|dr|prof)\.?[ \t]{1,4})?",
        r"\b(?i:regards|sincerely|cheers|thanks|thank you|best|yours truly)"
        r"[ \t]{0,4},[ \t]{0,4}\n?[ \t]{0,4}",
        r"\b(?i:my name is|i am called)[ \t]{1,4}",
        r"\b(?i:mr|mrs|ms|dr)\.[ \t]{1,4}",
    )
)
# Words that follow a greeting but are not names.
NOT_NAMES = frozenset(
    [
        "there",
        "all",
        "everyone",
        "everybody",
        "world",
        "team",
        "folks",
        "guys",
        "friends",
        "friend",
        "sir",
        "madam",
        "customer",
        "customers",
        "you",
        "again",
        "again,",
        "hiring",
        "manager",
        "colleagues",
        "class",
        "students",
        "reader",
        "readers",
        "assistant",
        "chatgpt",
        "the",
        "a",
        "an",
        "i",
        "my",
        "our",
        "your",
        "this",
        "that",
        "how",
        "what",
        "can",
        "could",
        "would",
        "please",
    ]
)
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
VERSION_BEFORE = re.compile(r"(?:version|v|release)\s{0,10}$", re.IGNORECASE)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that payment card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _emails(text: str) -> list[Finding]:
    return [Finding("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]


def _phones(text: str) -> list[Finding]:
    out = []
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 9 <= len(digits) <= 15:
            out.append(Finding("phone", m.start(), m.end(), m.group()))
    return out


def _cards(text: str) -> list[Finding]:
    out = []
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            out.append(Finding("card", m.start(), m.end(), m.group()))
    return out


def _accounts(text: str) -> list[Finding]:
    out = [
        Finding("account", m.start(), m.end(), m.group()) for m in IBAN.finditer(text) if iban_ok(m.group())
    ]
    for m in ACCOUNT_CONTEXT.finditer(text):
        num = m.group("num").rstrip(" -")
        if sum(c.isdigit() for c in num) >= 5:
            out.append(Finding("account", m.start("num"), m.start("num") + len(num), num))
    out += [Finding("account", m.start(), m.end(), m.group()) for m in SSN.finditer(text)]
    return out


def _addresses(text: str) -> list[Finding]:
    found = [Finding("address", m.start(), m.end(), m.group().rstrip(",")) for m in ADDRESS.finditer(text)]
    found += [Finding("address", m.start(), m.end(), m.group()) for m in PO_BOX.finditer(text)]
    return found


def _names(text: str) -> list[Finding]:
    out = []
    matches = (m for pattern in GREETINGS for m in pattern.finditer(text))
    for m in matches:
        start, words = m.start("name"), m.group("name").split()
        # Keep the leading capitalised words that are not greeting fillers.
        kept: list[str] = []
        for w in words:
            if w.casefold() in NOT_NAMES or not w[0].isupper():
                break
            kept.append(w)
        if kept:
            span = " ".join(kept)
            out.append(Finding("name", start, start + len(span), span))
    return out


def _ips(text: str) -> list[Finding]:
    out = []
    for m in IPV4.finditer(text):
        if VERSION_BEFORE.search(text[max(0, m.start() - 10) : m.start()]):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        out.append(Finding("ip", m.start(), m.end(), m.group()))
    for m in IPV6.finditer(text):
        candidate = m.group()
        # Three filled groups and a digit: 'a::b' in prose or code is not an address.
        if sum(1 for g in candidate.split(":") if g) < 3 or not re.search(r"\d", candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append(Finding("ip", m.start(), m.end(), candidate))
    return out


DETECTORS = (_emails, _cards, _accounts, _phones, _ips, _addresses, _names)


def detect(text: str) -> list[Finding]:
    """Every likely personal-data span in `text`, non-overlapping, in text order.

    Where spans overlap, the earlier detector in DETECTORS wins (a card number is not also a
    phone number).
    """
    # Kept sorted by start (the spans never overlap, so ends are sorted too): each candidate is
    # checked against its two neighbours, not against every span found so far.
    chosen: list[Finding] = []
    starts: list[int] = []
    for detector in DETECTORS:
        for f in detector(text):
            i = bisect.bisect_right(starts, f.start)
            if (i == 0 or chosen[i - 1].end <= f.start) and (i == len(chosen) or f.end <= chosen[i].start):
                chosen.insert(i, f)
                starts.insert(i, f.start)
    return chosen


def redact(text: str, spans: list[dict[str, Any]]) -> str:
    """Replace each span ({kind, start, end}) with a [KIND] placeholder; overlapping spans merge."""
    ordered = sorted(spans, key=lambda s: (int(s["start"]), -int(s["end"])))
    out, pos = [], 0
    for span in ordered:
        start, end = int(span["start"]), int(span["end"])
        if start < pos:
            start = pos
        if end <= start:
            continue
        out.append(text[pos:start])
        out.append(f"[{str(span['kind']).upper()}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)
