"""Values written into Redshift SQL as literals, all quoted by one function.

Most of what we send binds its values as parameters. UNLOAD cannot: the
recipe's query goes inside ``UNLOAD ('...')``, the staging prefix after
``TO``, the role after ``IAM_ROLE``, and ``:run_date`` becomes a typed
literal. Each of those is quoted by :func:`quote_literal`, so one rule,
tested once (tests/redshift/test_literals.py parses its output back with
sqlglot's Redshift dialect), decides what can reach the server as text.

Redshift reads a backslash in a string literal as an escape (its
``QUOTE_LITERAL`` doubles backslashes), so both the backslash and the quote
are escaped with a backslash, as AWS documents for UNLOAD's query text.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from lead_recovery.errors import LeadRecoveryError


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted Redshift string literal that reads back as ``text``.

    A NUL character cannot travel in the wire protocol's strings, so it is
    refused rather than silently cut.
    """
    if "\x00" in text:
        raise LeadRecoveryError("a NUL character cannot be sent to Redshift in a literal")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_literal(value: Any) -> str:
    """A typed Redshift literal for a bind parameter's value (UNLOAD takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} {quote_literal(value.isoformat(sep=' '))}"
    if isinstance(value, dt.date):
        return f"DATE {quote_literal(value.isoformat())}"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return quote_literal(str(value))
