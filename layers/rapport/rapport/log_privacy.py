"""A last guard for 'no phone number in any log line': numbers are masked in every formatted line.

rapport logs caller keys, never numbers, on purpose; this catches what slips in by accident, such as an
exception message or a traceback that quotes an event value.
"""

from __future__ import annotations

import logging
import re

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

# E.164 with its plus, optionally after tel:/sip: and with the usual separators inside.
_PHONE_NUMBER = re.compile(r"\+[1-9](?:[ \-.()]{0,2}\d){6,14}")
MASK = "+<number>"


def redact(text: str) -> str:
    return _PHONE_NUMBER.sub(MASK, text)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, with anything shaped like a phone number masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
