"""The bytes of a plain alert email without the ``email`` package's object model, or None.

``build_message`` lays every email out the same way: a few top-level headers, then
``multipart/alternative`` with a text and an HTML part. Building that through
``EmailMessage`` (a header object per header set, parsed again by ``set_param``,
refolded by the generator) cost about two thirds of rendering an alert in a storm
(bench/bench_alerts.py). Headers of printable ASCII that the ``email`` package writes back
unchanged or folds at its spaces are written here; any other header (one to
encode, a word too long for a line, an address with a display name) is folded
by the ``email`` package's policy on its own, as its generator does; the
``email`` package is also this module's test oracle
(tests/test_mail_fast.py): same inputs, same boundary, same bytes.

The bodies are encoded by the ``email`` package's own choice of transfer
encoding (``contentmanager._encode_text``, what ``set_content`` calls), so 7bit,
8bit, quoted-printable and base64 bodies come out as ``set_content`` makes them.
"""

from __future__ import annotations

import email.contentmanager
import re
from email.generator import Generator
from email.policy import Policy
from email.utils import format_datetime, formatdate, parsedate_to_datetime

# What the email package keeps as it is in each kind of header: unstructured text of printable ASCII words
# between single spaces, a bare address (a display name is re-quoted), a Message-ID of dot-atoms. Anything
# else takes the general path.
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                      r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_MESSAGE_ID = re.compile(rf"<{_ADDRESS.pattern}>")
_STRUCTURED = {"from": _ADDRESS, "to": _ADDRESS, "message-id": _MESSAGE_ID}
# Lines the generator writes with the policy's line separator, whatever the body had.
_NEWLINES = re.compile(r"\r\n|\r|\n")
_encode_text = getattr(email.contentmanager, "_encode_text", None)


def is_bare_address(value: str) -> bool:
    """An ASCII address without a display name: it is also the envelope address, as the header reads."""
    return _ADDRESS.fullmatch(value) is not None


def header_date(date: float | None) -> str:
    """The Date header as the email package writes ``formatdate(date, usegmt=True)``: its date header reads
    the value back as a datetime and writes that (``+0000``, not ``GMT``)."""
    return format_datetime(parsedate_to_datetime(formatdate(date, usegmt=True)))


def _header_lines(name: str, value: str, policy: Policy) -> str | None:
    """``name: value`` as the email package folds it, or None when it would do more than fold at spaces."""
    nl, width = policy.linesep, policy.max_line_length
    if "=?" in value:
        return None
    pattern = _STRUCTURED.get(name.lower())
    if pattern is not None:  # addresses and ids: only when they fit as they are
        return f"{name}: {value}{nl}" if len(name) + 2 + len(value) <= width and pattern.fullmatch(value) else None
    if not (value.isascii() and value.isprintable()) or "  " in value or value[:1] in ("", " ") or value[-1] == " ":
        return None
    if len(name) + 2 + len(value) <= width:
        return f"{name}: {value}{nl}"
    # A value that fits on a line of its own goes there whole; a longer one is wrapped at its spaces, each
    # continuation line led by the space it was folded at. A word too long for a line is left to the package.
    if 1 + len(value) <= width:
        return f"{name}:{nl} {value}{nl}"
    words = value.split(" ")
    if max(map(len, words)) + len(name) + 2 > width:
        return None
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = " " + word
    lines.append(line)
    return nl.join(lines) + nl


def _by_the_package(name: str, value: str, policy: Policy) -> str:
    """One header as the email package writes it (its generator folds each header on its own, so the others
    can be written here): one with non-ASCII to encode, or a word too long to fold at spaces."""
    return policy.fold_binary(*policy.header_store_parse(name, value)).decode("ascii", "surrogateescape")


def _part(subtype: str, body: str, policy: Policy, *, mime_version: bool) -> str:
    cte, payload = _encode_text(body, "utf-8", None, policy)
    nl = policy.linesep
    head = (f'Content-Type: text/{subtype}; charset="utf-8"{nl}Content-Transfer-Encoding: {cte}{nl}'
            + (f"MIME-Version: 1.0{nl}" if mime_version else "") + nl)
    return head + _NEWLINES.sub(nl, payload)


def alternative_wire(headers: list[tuple[str, str]], *, text: str, html: str, policy: Policy) -> bytes | None:
    """What ``EmailMessage(policy=policy)`` with ``headers`` set in order, then ``set_content(text)`` and
    ``add_alternative(html, subtype="html")``, serialises to with ``as_bytes()``; None when the email package is
    not the one this was written for (no ``_encode_text``) or the policy is not an SMTP one. A header this
    module cannot write (to encode, or to fold other than at its spaces) is written by the email package. Header values are already cleaned (``mail.header_safe``)."""
    if _encode_text is None or policy.linesep != "\r\n" or policy.cte_type != "8bit":
        return None
    written = [_header_lines(name, value, policy) or _by_the_package(name, value, policy) for name, value in headers]
    nl = policy.linesep
    # The text part is the content set first, moved into the multipart; the HTML part is an EmailMessage of
    # its own, so set_content gives it a MIME-Version too.
    parts = [_part("plain", text, policy, mime_version=False), _part("html", html, policy, mime_version=True)]
    boundary = Generator._make_boundary()
    if f"--{boundary}" in parts[0] or f"--{boundary}" in parts[1]:
        # The generator's own way out (a counter appended), which compiles a pattern for the random boundary:
        # only for the rare body that holds one.
        boundary = Generator._make_boundary(nl.join(parts))
    top = "".join(written)
    wire = (f'{top}MIME-Version: 1.0{nl}Content-Type: multipart/alternative;{nl} boundary="{boundary}"{nl}{nl}'
            f"--{boundary}{nl}{parts[0]}{nl}--{boundary}{nl}{parts[1]}{nl}--{boundary}--{nl}")
    # 8bit bodies hold their bytes as surrogate escapes, which the email package's BytesGenerator writes back so.
    return wire.encode("ascii", "surrogateescape")
