"""``:run_date`` (and any ``:name``) in recipe SQL, found by Redshift's own lexical rules.

The driver's ``paramstyle = "named"`` scanner reads ``'it\\'s'`` as a string
that ends at the backslash-escaped quote, so everything after it flips
between "inside a string" and "outside": a ``:run_date`` there stays unbound
(the query fails), and a ``:`` inside a later literal could be taken for a
parameter. Redshift reads a backslash in a literal as an escape, as
sqlglot's Redshift tokenizer does, so that tokenizer finds the parameters
here, skipping string literals (``'...'``, ``E'...'``, ``$$...$$``), quoted
identifiers, comments and ``::`` casts. Then:

* the cursor path (:func:`bind`) replaces each ``:name`` by ``$n`` and binds
  the values positionally. Where a literal holds ``\\'``, it is sent as
  ``''`` (the same quote to Redshift) so that the driver's scanner, which
  still runs over the statement, sees the same string boundaries; and the
  statement is checked to come out of that scanner unchanged;
* the UNLOAD path (:func:`inline`), which takes no bind parameters, replaces
  each ``:name`` by a typed literal (:func:`~.literals.sql_literal`).

Both paths therefore read the same parameters in the same SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.literals import sql_literal

PARAMSTYLE = "numeric"  # what the cursor is set to: it rewrites nothing we send (checked)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Placeholder:
    """``:name`` at ``sql[start:end]``."""

    start: int
    end: int
    name: str


@dataclass(frozen=True)
class _Literal:
    start: int
    end: int


def _tokens(sql: str) -> list[Any]:
    from sqlglot.dialects.redshift import Redshift
    from sqlglot.errors import TokenError

    try:
        return Redshift().tokenize(sql)
    except TokenError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "cannot be read"
        raise LeadRecoveryError(
            f"the SQL cannot be read ({first}); check its quotes and comments"
        ) from None


def scan(sql: str) -> tuple[list[Placeholder], list[_Literal]]:
    """Every ``:name`` outside literals and comments, and every single-quoted literal."""
    from sqlglot.tokens import TokenType

    tokens = _tokens(sql)
    found: list[Placeholder] = []
    literals: list[_Literal] = []
    for index, token in enumerate(tokens):
        raw = sql[token.start : token.end + 1]
        if raw.endswith("'") and "'" in raw[:-1]:
            literals.append(_Literal(token.start, token.end + 1))
        if token.token_type != TokenType.COLON or index + 1 >= len(tokens):
            continue
        name_token = tokens[index + 1]
        name = sql[name_token.start : name_token.end + 1]
        if name_token.start == token.end + 1 and _NAME_RE.fullmatch(name):
            found.append(Placeholder(token.start, name_token.end + 1, name))
    return found, literals


def _unknown(name: str, params: Mapping[str, Any]) -> LeadRecoveryError:
    return LeadRecoveryError(
        f"the SQL uses the parameter :{name}, but only "
        f"{', '.join(':' + k for k in params) or 'none'} can be bound"
    )


def _driver_safe_literal(raw: str) -> str:
    """A literal with each backslash-escaped quote written as a doubled quote.

    Both mean one quote to Redshift; only the doubled one means that to the
    driver's scanner. Other escapes (``\\\\``, ``\\n``, ...) are kept as written.
    """
    opening = raw.index("'")
    out = [raw[: opening + 1]]
    body = raw[opening + 1 : -1]
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append("''" if body[i + 1] == "'" else body[i : i + 2])
            i += 2
        else:
            out.append(body[i])
            i += 1
    out.append("'")
    return "".join(out)


def _rewrite(
    sql: str,
    replace: Callable[[str], str],
    params: Mapping[str, Any],
    *,
    driver_safe: bool,
) -> str:
    placeholders, literals = scan(sql)
    edits: list[tuple[int, int, str]] = []
    for placeholder in placeholders:
        if placeholder.name not in params:
            raise _unknown(placeholder.name, params)
        edits.append((placeholder.start, placeholder.end, replace(placeholder.name)))
    if driver_safe:
        for literal in literals:
            raw = sql[literal.start : literal.end]
            if "\\'" in raw:
                edits.append((literal.start, literal.end, _driver_safe_literal(raw)))
    out, pos = [], 0
    for start, end, text in sorted(edits):
        out.append(sql[pos:start])
        out.append(text)
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def bind(sql: str, params: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``sql`` with ``:name`` as ``$1``, ``$2``... in order of first use, and their values."""
    order: list[str] = []

    def position(name: str) -> str:
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = _rewrite(sql, position, params, driver_safe=True)
    return text, tuple(params[name] for name in order)


def inline(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with every ``:name`` replaced by its value as a typed literal (for UNLOAD)."""
    return _rewrite(sql, lambda name: sql_literal(params[name]), params, driver_safe=False)


def check_driver_leaves_alone(statement: str, prefix_lines: int = 0) -> None:
    """Raise if the driver's own parameter scanner would change ``statement``.

    It runs over every statement sent with values; after :func:`bind` nothing
    is left for it to rewrite, unless the SQL holds a ``:`` that neither
    Redshift's rules nor ours read as a parameter (e.g. ``:1``).
    """
    from redshift_connector.core import convert_paramstyle

    try:
        converted, _ = convert_paramstyle(PARAMSTYLE, statement)
    except Exception:
        converted = None
    if converted == statement:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(statement, converted or "", strict=False)) if a != b),
        len(statement) - 1,
    )
    line = statement[:at].count("\n") + 1 - prefix_lines
    snippet = statement[at : at + 12].splitlines()[0] if statement[at:] else ""
    raise LeadRecoveryError(
        f"the SQL has {snippet!r} at line {max(line, 1)}, which the Redshift driver would "
        "rewrite as a parameter; only :name parameters are supported"
    )
