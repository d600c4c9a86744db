"""Personal-data detection on a labelled set of positive and negative examples."""

from __future__ import annotations

import pytest

from app.prompts.pii import detect, iban_ok, luhn_ok, redact

# (text, the kinds it contains); an empty set marks a negative example.
LABELLED: list[tuple[str, set[str]]] = [
    ("Email me at jane.doe+news@example.co.uk about the refund.", {"email"}),
    ("Contact: bob_smith@mail.example.org", {"email"}),
    ("Forward this to HR (hr-team@acme.io) please.", {"email"}),
    ("Call me on +1 415 555 0132 tomorrow.", {"phone"}),
    ("My number is (415) 555-0132, text after 6.", {"phone"}),
    ("Reach the office at 415-555-0132.", {"phone"}),
    ("Ring 020 7946 0958 for the London branch.", {"phone"}),
    ("Mobile: +44 7700 900123", {"phone"}),
    ("Charge it to 4111 1111 1111 1111 please.", {"card"}),
    ("card number 5500-0000-0000-0004 expires 12/27", {"card"}),
    ("My Amex is 378282246310005.", {"card"}),
    ("Wire it to IBAN GB82 WEST 1234 5698 7654 32.", {"account"}),
    ("Pay into DE89370400440532013000 by Friday.", {"account"}),
    ("My account number is 12345678 at First Bank.", {"account"}),
    ("acct #: 000123456789, routing 021000021", {"account"}),
    ("His SSN is 078-05-1120.", {"account"}),
    ("Ship it to 221B Baker Street, London.", {"address"}),
    ("I live at 1600 Pennsylvania Avenue NW, Washington.", {"address"}),
    ("Deliver to 42 Elm Rd. Apt 5 before noon.", {"address"}),
    ("Send mail to PO Box 1234, Springfield.", {"address"}),
    ("The party is at 12 Oak Lane tonight.", {"address"}),
    ("Hi John, can you summarise this email for me?", {"name"}),
    ("Dear Ms. Garcia,\nThank you for your letter.", {"name"}),
    ("Hello Maria Lopez, your order has shipped.", {"name"}),
    ("Write a reply: Hey Tom, are we still on for Friday?", {"name"}),
    ("Best regards, Peter Jansen", {"name"}),
    ("My name is Aisha Khan and I need a CV.", {"name"}),
    ("The server at 192.168.1.20 keeps timing out.", {"ip"}),
    ("Block 203.0.113.77 in the firewall.", {"ip"}),
    ("My IPv6 is 2001:db8:85a3::8a2e:370:7334.", {"ip"}),
    ("Hi Sam, my email is sam@example.com and my phone is 415-555-0199.", {"name", "email", "phone"}),
    ("Dear Mr. Brown, please send the invoice to 10 Downing Street.", {"name", "address"}),
    # Negatives: numbers, dates, code, greetings without names, look-alikes.
    ("What is 17 plus 25?", set()),
    ("Sort these numbers: 9, 2, 5, 1200, 3400.", set()),
    ("Name the capital of France.", set()),
    ("Write a hello world program in Python.", set()),
    ("Hi there, can you explain photosynthesis?", set()),
    ("Hello everyone, write a haiku about autumn.", set()),
    ("Dear Sir or Madam, draft a complaint letter template.", set()),
    ("Explain the difference between TCP and UDP.", set()),
    ("In 1969, 3 astronauts flew 384400 km to the Moon.", set()),
    ("Upgrade to version 1.2.3.4 of the library.", set()),
    ("The meeting is at 10:30:00 on 2023-04-05.", set()),
    ("Compute 1234 * 5678 and show your steps.", set()),
    ("ISBN 978-3-16-148410-0 is a book number.", set()),
    ("List 5 streets named after presidents.", set()),
    ("Write a story about a road trip on Route 66.", set()),
    ("Translate 'good morning' into German.", set()),
    ("Summarise the plot of Pride and Prejudice.", set()),
    ("How many bytes are in 1,048,576 kilobytes?", set()),
    ("Use the @decorator syntax in Python classes.", set()),
    ("Print a table with columns a::b and c::d.", set()),
    ("Reverse the word 'stone'.", set()),
    ("What does HTTP status 404 mean?", set()),
    ("The price rose from 1,299.99 to 1,499.99 dollars.", set()),
    ("Dear diary, today was long.", set()),
]


def test_detection_precision_and_recall_on_the_labelled_set(capsys: pytest.CaptureFixture[str]) -> None:
    tp = fp = fn = 0
    kind_tp = kind_fp = kind_fn = 0
    misses: list[str] = []
    for text, kinds in LABELLED:
        found = {f.kind for f in detect(text)}
        flagged, positive = bool(found), bool(kinds)
        tp += flagged and positive
        fp += flagged and not positive
        fn += positive and not flagged
        kind_tp += len(found & kinds)
        kind_fp += len(found - kinds)
        kind_fn += len(kinds - found)
        if found != kinds:
            misses.append(f"{text!r}: expected {sorted(kinds)}, found {sorted(found)}")
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    kp, kr = kind_tp / (kind_tp + kind_fp), kind_tp / (kind_tp + kind_fn)
    with capsys.disabled():
        print(
            f"\nPII detection on {len(LABELLED)} labelled prompts: "
            f"prompt-level precision {precision:.3f} recall {recall:.3f}; "
            f"kind-level precision {kp:.3f} recall {kr:.3f}"
        )
        for miss in misses:
            print("  mismatch:", miss)
    assert recall >= 0.95 and precision >= 0.9
    assert kr >= 0.9 and kp >= 0.85


def test_findings_point_at_the_personal_data() -> None:
    text = "Hi Sam, mail sam@example.com"
    found = detect(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [("name", "Sam"), ("email", "sam@example.com")]


def test_redact_replaces_spans_with_placeholders() -> None:
    text = "Hi Sam, mail sam@example.com or call 415-555-0132."
    spans = [f.as_dict() for f in detect(text)]
    assert redact(text, spans) == "Hi [NAME], mail [EMAIL] or call [PHONE]."
    assert redact(text, []) == text


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")
