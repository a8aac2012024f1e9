"""Notification addresses: one syntax check for every way an address comes in (`spaceport submit --email`, an
upload's `dataset.json` on disk or S3, a run's `spaceport/notify` tag) and for the notifier before SES.

One value is one address: no line breaks (a CR/LF in a value would let it add mail headers such as `Bcc:`), no
lists inside a value (commas, semicolons), no display names (`Pilot <pilot@example.org>`), no quoted local parts
or IP-literal domains, and a real RFC 5321/5322 syntax check by the `email-validator` library (without DNS:
nothing is looked up). Only ASCII local parts (SES does not take SMTPUTF8); internationalised domains are kept
in their ASCII (punycode) form.
"""

from __future__ import annotations

from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESSES = 50  # SES takes at most 50 recipients per message
MAX_ADDRESS_CHARS = 254  # RFC 5321 path limit


class InvalidEmail(ValueError):
    """An address that cannot be used, with the reason."""


def validate_address(value: object, where: str = "address") -> str:
    """`value` as one normalised address, or InvalidEmail naming `where` and the reason."""
    if not isinstance(value, str):
        raise InvalidEmail(f"{where}: not an email address: {value!r} is not a string")
    text = value.strip(" \t")
    if any(c in text for c in "\r\n\x00"):
        raise InvalidEmail(f"{where}: not an email address: {value!r} contains a line break or NUL (one address "
                           "per value)")
    if any(c in text for c in ",;"):
        raise InvalidEmail(f"{where}: not an email address: {value!r} holds a list (one address per value; give "
                           "each as its own value)")
    if len(text) > MAX_ADDRESS_CHARS:
        raise InvalidEmail(f"{where}: not an email address: {len(text)} characters (at most "
                           f"{MAX_ADDRESS_CHARS})")
    try:
        info = validate_email(text, check_deliverability=False, allow_smtputf8=False, allow_quoted_local=False,
                              allow_domain_literal=False, allow_display_name=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{where}: not an email address: {value!r} ({exc})") from None
    return info.ascii_email or info.normalized


def validate_addresses(values: Iterable[object], where: str = "address") -> list[str]:
    """Each value checked as one address (empty values dropped), duplicates removed, order kept. `values` is a
    list: a single string is refused, never split into its characters or on commas."""
    if isinstance(values, str | bytes):
        raise InvalidEmail(f"{where}: a list of addresses is expected, not the string {values!r}")
    out: list[str] = []
    for value in values:
        if isinstance(value, str) and not value.strip(" \t"):
            continue
        address = validate_address(value, where)
        if address not in out:
            out.append(address)
    if len(out) > MAX_ADDRESSES:
        raise InvalidEmail(f"{where}: {len(out)} addresses (at most {MAX_ADDRESSES})")
    return out
