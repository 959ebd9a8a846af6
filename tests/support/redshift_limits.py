"""Emulations of documented Redshift behaviour that PostgreSQL does not have.

THESE ARE EMULATIONS, NOT REDSHIFT. They play what AWS documents (and what
production users report) so the extract's handling of it is tested against a
real server and the real driver; they do not reproduce Redshift's timing,
its planner or its storage. The handshake shim (redshift_shim.py) applies
them, each switched on per shim process (see :class:`Limits`):

* single-node: ``FETCH FORWARD n`` with n above 1000, or ``FETCH ALL``,
  fails with SQLSTATE XX000 and the text Redshift sends ("Fetch size n
  exceeds the limit of 1000 for a single node configuration. ...").
  AWS FETCH reference; PostHog#78729.
* cursor-data cap: a cursor whose result exceeds N rows (or B bytes of row
  text) fails at its first FETCH with "exceeded the maximum size allowed for
  the total set of cursor data: 8000MB." (the figure is a setting). Like
  Redshift, the whole result is materialized before the first row is
  returned. AWS cursor constraints; PostHog#79500.
* UNLOAD: ``UNLOAD ('select ...') TO 's3://bucket/prefix/' IAM_ROLE ...
  FORMAT AS PARQUET [MANIFEST [VERBOSE]] [MAXFILESIZE ..] [PARALLEL ..]
  [ALLOWOVERWRITE | CLEANPATH] [REGION ..]`` is parsed with Redshift's
  quoting rules (backslash escapes and doubled quotes in the query literal)
  and only the syntax Redshift accepts passes: no bind parameters, no LIMIT
  in the outermost SELECT, an IAM_ROLE, an s3:// target that is empty
  unless ALLOWOVERWRITE/CLEANPATH. The inner query runs on PostgreSQL (as
  the admin role, over psql's ``COPY ... TO STDOUT``), and its rows are
  written as Parquet parts ``<prefix>NNNN_part_00.parquet`` (one per emulated
  slice, round-robin, empty slices write nothing) plus ``<prefix>manifest``
  to the S3 server the environment points at (``AWS_ENDPOINT_URL``: the
  tests' local moto server). Column types follow Redshift's documented
  Parquet mapping. What it does not emulate: Redshift's own unload time,
  its file sizes, the row order across slices beyond "not the query's".

* Redshift's string literals (``redshift_strings``): Redshift reads a
  backslash in ``'...'`` as an escape (its QUOTE_LITERAL doubles
  backslashes), as PostgreSQL did before 9.1. Sessions through the shim, and
  the UNLOAD emulation's inner query, run with
  ``standard_conforming_strings = off`` (and ``escape_string_warning = off``),
  so ``'it\\'s'`` means ``it's`` here as it does on Redshift.

Errors are raised on PostgreSQL itself (``public.lr_shim_raise``, created by
:data:`SETUP_SQL`), so the transaction is aborted exactly as a server error
aborts it, and the driver sees a normal ErrorResponse with the SQLSTATE.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SINGLE_NODE_FETCH_LIMIT = 1000
CURSOR_CAP_LABEL = "8000MB"
ROW_GROUP_ROWS = 131_072  # rows per Parquet row group in the emulated parts

SETUP_SQL = """
CREATE OR REPLACE FUNCTION public.lr_shim_raise(state text, message text)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $lr_shim$
BEGIN
    RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message;
END
$lr_shim$;
"""


def single_node_message(size: str | int) -> str:
    return (
        f"Fetch size {size} exceeds the limit of {SINGLE_NODE_FETCH_LIMIT} for a single node "
        "configuration. Reduce the client fetch/cache size or upgrade to a multi node "
        "installation."
    )


def cursor_cap_message(label: str = CURSOR_CAP_LABEL) -> str:
    return f"exceeded the maximum size allowed for the total set of cursor data: {label}."


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _raise_sql(head: str, state: str, message: str, note: str) -> str:
    note = note.replace("*/", "* /")
    return (
        f"{head}/* lr_shim: {note} */ "
        f"SELECT public.lr_shim_raise({_literal(state)}, {_literal(message)})"
    )


_LEADING = r"(?P<head>\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*)"
_FETCH_RE = re.compile(
    _LEADING + r"FETCH\s+(?:(?:FORWARD\s+)?(?P<count>\d+|ALL)\b|NEXT\b|FORWARD\s+FROM\b)?",
    re.IGNORECASE | re.DOTALL,
)
_DECLARE_RE = re.compile(
    _LEADING + r"DECLARE\s+(?P<name>\w+)\s+CURSOR\s+FOR\s+(?P<query>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_UNLOAD_RE = re.compile(_LEADING + r"UNLOAD\s*\(\s*'", re.IGNORECASE | re.DOTALL)


@dataclass
class Limits:
    """Which emulations a shim applies; all off by default (bytes are copied untouched)."""

    single_node: bool = False
    cursor_cap_rows: int | None = None
    cursor_cap_bytes: int | None = None
    cursor_cap_label: str = CURSOR_CAP_LABEL
    unload: bool = False
    unload_psql: str | None = None  # psql binary
    unload_conninfo: str | None = None  # where the inner query runs (admin, Unix socket)
    unload_slices: int = 2
    redshift_strings: bool = False

    @property
    def active(self) -> bool:
        return bool(
            self.single_node
            or self.cursor_cap_rows is not None
            or self.cursor_cap_bytes is not None
            or self.unload
            or self.redshift_strings
        )

    @property
    def startup_settings(self) -> dict[str, str]:
        """Settings every session through the shim starts with (startup parameters)."""
        if not self.redshift_strings:
            return {}
        return {"standard_conforming_strings": "off", "escape_string_warning": "off"}

    def args(self) -> list[str]:
        """Command-line flags for redshift_shim.py."""
        out = []
        if self.single_node:
            out.append("--single-node")
        if self.cursor_cap_rows is not None:
            out += ["--cursor-cap-rows", str(self.cursor_cap_rows)]
        if self.cursor_cap_bytes is not None:
            out += ["--cursor-cap-bytes", str(self.cursor_cap_bytes)]
        if self.cursor_cap_label != CURSOR_CAP_LABEL:
            out += ["--cursor-cap-label", self.cursor_cap_label]
        if self.redshift_strings:
            out.append("--redshift-strings")
        if self.unload:
            out += [
                "--unload",
                "--unload-psql",
                str(self.unload_psql),
                "--unload-conninfo",
                str(self.unload_conninfo),
                "--unload-slices",
                str(self.unload_slices),
            ]
        return out

    # -- the rewrite -----------------------------------------------------------------
    def rewrite(self, sql: str, nparams: int, log=None) -> str | None:
        """The statement PostgreSQL gets instead of ``sql``, or None to pass it on."""
        if self.single_node:
            match = _FETCH_RE.match(sql)
            if match and match.group("count"):
                count = match.group("count").upper()
                if count == "ALL" or int(count) > SINGLE_NODE_FETCH_LIMIT:
                    return _raise_sql(
                        match.group("head"),
                        "XX000",
                        single_node_message(count),
                        f"single-node refused {sql.strip()[:80]}",
                    )
        if self.cursor_cap_rows is not None or self.cursor_cap_bytes is not None:
            match = _DECLARE_RE.match(sql)
            if match:
                return self._capped_declare(match)
        if self.unload and _UNLOAD_RE.match(sql):
            return Unload(self, log).run(sql, nparams)
        return None

    def _capped_declare(self, match: re.Match) -> str:
        """The same cursor over the materialized result, failing at the first FETCH if too big."""
        query = match.group("query").rstrip().rstrip(";")
        checks = []
        if self.cursor_cap_rows is not None:
            checks.append(f"(SELECT count(*) FROM lr_shim_q) > {int(self.cursor_cap_rows)}")
        if self.cursor_cap_bytes is not None:
            checks.append(
                "(SELECT coalesce(sum(octet_length(t::text)), 0) FROM lr_shim_q AS t) > "
                f"{int(self.cursor_cap_bytes)}"
            )
        message = _literal(cursor_cap_message(self.cursor_cap_label))
        return (
            f"{match.group('head')}DECLARE {match.group('name')} CURSOR FOR\n"
            f"WITH lr_shim_q AS MATERIALIZED (\n{query}\n)\n"
            "SELECT * FROM lr_shim_q WHERE CASE WHEN "
            + " OR ".join(checks)
            + f" THEN public.lr_shim_raise('XX000', {message}) ELSE true END"
        )


# -- UNLOAD ------------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, message: str, state: str = "XX000") -> None:
        super().__init__(message)
        self.state = state


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """A Redshift string literal's value from just after its opening quote.

    Backslash escapes the next character; a doubled quote is a quote.
    Returns the value and the index after the closing quote.
    """
    out = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == "'":
            if text.startswith("''", i):
                out.append("'")
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise Refused("unterminated quoted string in UNLOAD", "42601")


_TOKEN_RE = re.compile(r"\s*('(?:[^'\\]|\\.|'')*'|[A-Za-z_][A-Za-z0-9_]*|\d+|\S)", re.DOTALL)
_PARQUET_FORBIDS = {
    "DELIMITER",
    "FIXEDWIDTH",
    "HEADER",
    "ADDQUOTES",
    "ESCAPE",
    "NULL",
    "GZIP",
    "BZIP2",
    "ZSTD",
}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            break
        out.append(match.group(1))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    if len(token) < 2 or token[0] != "'":
        raise Refused(f'syntax error at or near "{token}"', "42601")
    value, _ = read_quoted(token, 1)
    return value


# Redshift's documented Parquet types for its column types (format_type names here).
def parquet_type(type_name: str):
    import pyarrow as pa

    name = type_name.lower()
    simple = {
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "real": pa.float32(),
        "double precision": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp without time zone": pa.timestamp("us"),
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    }
    if name in simple:
        return simple[name]
    match = re.fullmatch(r"numeric\((\d+),(\d+)\)", name.replace(" ", ""))
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    if name == "numeric":
        return pa.decimal128(38, 10)
    return pa.string()


class Unload:
    """One emulated UNLOAD statement."""

    def __init__(self, limits: Limits, log=None) -> None:
        self.limits = limits
        self._log = log

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    def run(self, sql: str, nparams: int) -> str:
        head = _UNLOAD_RE.match(sql).group("head")
        try:
            rows, parts, target = self._unload(sql, nparams)
        except Refused as err:
            self.log(f"UNLOAD refused: {err}")
            return _raise_sql(head, err.state, str(err), "UNLOAD refused")
        self.log(f"UNLOAD {rows} rows in {parts} parts to {target}")
        return (
            f"{head}/* lr_shim: UNLOAD emulated, {rows} rows in {parts} parts to {target} */ "
            "DO $lr_shim$ BEGIN RAISE INFO 'UNLOAD completed, % record(s) unloaded "
            f"successfully.', {rows}; END $lr_shim$"
        )

    def _parse(self, sql: str, nparams: int) -> tuple[str, str, dict]:
        match = _UNLOAD_RE.match(sql)
        query, pos = read_quoted(sql, match.end())
        rest = sql[pos:]
        close = re.match(r"\s*\)", rest)
        if not close:
            raise Refused('syntax error at or near "("', "42601")
        tokens = _tokens(rest[close.end() :].rstrip().rstrip(";"))
        if nparams or re.search(r"\$\d", rest) or re.search(r"\$\d", query):
            raise Refused("UNLOAD does not support bind parameters", "0A000")
        if len(tokens) < 2 or tokens[0].upper() != "TO":
            raise Refused('syntax error at or near "TO"', "42601")
        target = _unquote(tokens[1])
        if not target.startswith("s3://"):
            raise Refused(f"the UNLOAD target must be an s3:// path, not '{target}'", "22023")
        options: dict = {"format": "TEXT", "manifest": False, "overwrite": False}
        i = 2
        while i < len(tokens):
            word = tokens[i].upper()
            i += 1
            if word == "IAM_ROLE":
                role = tokens[i] if i < len(tokens) else ""
                i += 1
                if role.upper() != "DEFAULT" and not re.fullmatch(
                    r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+(,arn:aws[\w-]*:iam::\d{12}:role/"
                    r"[\w+=,.@/-]+)*",
                    _unquote(role),
                ):
                    raise Refused("Invalid IAM_ROLE: not an IAM role ARN", "XX000")
                options["role"] = role
            elif word in ("CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"):
                raise Refused(f"the emulation takes IAM_ROLE only, not {word}", "0A000")
            elif word == "FORMAT":
                if i < len(tokens) and tokens[i].upper() == "AS":
                    i += 1
                options["format"] = tokens[i].upper() if i < len(tokens) else ""
                i += 1
            elif word in ("PARQUET", "CSV", "JSON"):
                options["format"] = word
            elif word == "MANIFEST":
                options["manifest"] = True
                if i < len(tokens) and tokens[i].upper() == "VERBOSE":
                    options["verbose"] = True
                    i += 1
            elif word == "MAXFILESIZE":
                if i < len(tokens) and tokens[i].upper() == "AS":
                    i += 1
                i += 1
                if i < len(tokens) and tokens[i].upper() in ("MB", "GB"):
                    i += 1
            elif word == "PARALLEL":
                if i < len(tokens) and tokens[i].upper() in ("ON", "OFF", "TRUE", "FALSE"):
                    i += 1
            elif word in ("ALLOWOVERWRITE", "CLEANPATH"):
                options["overwrite"] = True
            elif word == "REGION":
                if i < len(tokens) and tokens[i].upper() == "AS":
                    i += 1
                i += 1
            elif word in _PARQUET_FORBIDS:
                options.setdefault("text_only", word)
            else:
                raise Refused(f'syntax error at or near "{tokens[i - 1]}"', "42601")
        if "role" not in options:
            raise Refused("UNLOAD needs authorization: IAM_ROLE 'arn:...' or IAM_ROLE default")
        if options["format"] != "PARQUET":
            raise Refused("the emulation supports FORMAT AS PARQUET only", "0A000")
        if "text_only" in options:
            raise Refused(f"{options['text_only']} is not supported with PARQUET", "0A000")
        return query, target, options

    @staticmethod
    def _outer_limit(query: str) -> bool:
        import sqlglot
        from sqlglot import exp

        try:
            tree = sqlglot.parse_one(query, read="redshift")
        except Exception:
            return False  # PostgreSQL reports the syntax error
        return isinstance(tree, exp.Query) and (
            tree.args.get("limit") is not None or tree.args.get("offset") is not None
        )

    def _psql(self, args: list[str], stdin: str | None = None, **kwargs):
        cmd = [
            self.limits.unload_psql,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-d",
            self.limits.unload_conninfo,
            *args,
        ]
        env = {**os.environ, "PGTZ": "UTC", "PGDATESTYLE": "ISO", "PGCLIENTENCODING": "UTF8"}
        settings = self.limits.startup_settings
        if settings:
            env["PGOPTIONS"] = " ".join(f"-c {k}={v}" for k, v in settings.items())
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            **kwargs,
        )

    @staticmethod
    def _sql_error(stderr: str) -> Refused:
        match = re.search(r"ERROR:\s+([0-9A-Z]{5}): (.*)", stderr)
        if match:
            return Refused(match.group(2).strip(), match.group(1))
        return Refused(stderr.strip().splitlines()[0] if stderr.strip() else "psql failed")

    def _describe(self, query: str) -> list[tuple[str, str]]:
        proc = self._psql(["-A", "-t", "-q", "-F", "\x1f"], stdin=query + "\n\\gdesc\n")
        out, err = proc.communicate(query.encode() + b"\n\\gdesc\n")
        if proc.returncode != 0:
            raise self._sql_error(err.decode("utf-8", "replace"))
        columns = []
        for line in out.decode().splitlines():
            if line:
                name, _, typ = line.partition("\x1f")
                columns.append((name, typ))
        return columns

    def _unload(self, sql: str, nparams: int) -> tuple[int, int, str]:
        import boto3
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        query, target, options = self._parse(sql, nparams)
        query = query.strip().rstrip(";").strip()
        if self._outer_limit(query):
            raise Refused(
                "Limit clause is not supported in the outermost SELECT of UNLOAD", "0A000"
            )
        bucket, _, prefix = target[len("s3://") :].partition("/")
        s3 = boto3.client("s3")
        try:
            existing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as err:
            raise Refused(f"S3ServiceException: {type(err).__name__}: {err}") from None
        if existing.get("KeyCount") and not options["overwrite"]:
            raise Refused(
                "Specified unload destination on S3 is not empty. Consider using a different "
                "bucket / prefix, manually removing the target files in S3, or using the "
                "ALLOWOVERWRITE option."
            )
        columns = self._describe(query)
        schema = pa.schema([pa.field(n, parquet_type(t)) for n, t in columns])
        names = [f"c{i}" for i in range(len(columns))]
        proc = self._psql(["-q", "-c", f"COPY ({query}) TO STDOUT WITH (FORMAT csv)"])
        slices = max(1, self.limits.unload_slices)
        entries = []
        total_rows = 0
        with tempfile.TemporaryDirectory(prefix="lr-shim-unload-") as tmp:
            writers: dict[int, pq.ParquetWriter] = {}
            counts = [0] * slices
            try:
                reader = pcsv.open_csv(
                    proc.stdout,
                    read_options=pcsv.ReadOptions(column_names=names, block_size=8 << 20),
                    convert_options=pcsv.ConvertOptions(
                        column_types=dict(zip(names, schema.types, strict=True)),
                        true_values=["t"],
                        false_values=["f"],
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
                pending: dict[int, list] = {}

                def flush(part: int) -> None:
                    if part not in writers:
                        writers[part] = pq.ParquetWriter(
                            Path(tmp) / f"{part:04d}", schema, compression="snappy"
                        )
                    writers[part].write_table(pa.Table.from_batches(pending.pop(part), schema))

                for batch in reader:
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                    # every slice holds a share of every block, as rows spread over slices
                    step = -(-batch.num_rows // slices)
                    for part in range(slices):
                        piece = batch.slice(part * step, step)
                        if piece.num_rows:
                            pending.setdefault(part, []).append(piece)
                            counts[part] += piece.num_rows
                            if sum(b.num_rows for b in pending[part]) >= ROW_GROUP_ROWS:
                                flush(part)
                for part in list(pending):
                    flush(part)
            except pa.ArrowInvalid as err:
                if "Empty CSV file" not in str(err):
                    proc.kill()
                    raise Refused(f"emulated UNLOAD could not convert a row: {err}") from None
            finally:
                for writer in writers.values():
                    writer.close()
                err_text = proc.stderr.read().decode("utf-8", "replace")
                proc.wait()
            if proc.returncode != 0:
                raise self._sql_error(err_text)
            for part in sorted(writers):
                key = f"{prefix}{part:04d}_part_00.parquet"
                path = Path(tmp) / f"{part:04d}"
                s3.upload_file(str(path), bucket, key)
                size = path.stat().st_size
                entries.append(
                    {
                        "url": f"s3://{bucket}/{key}",
                        "meta": {"content_length": size, "record_count": counts[part]},
                    }
                )
                total_rows += counts[part]
        if options["manifest"]:
            manifest = {
                "entries": entries,
                "meta": {
                    "content_length": sum(e["meta"]["content_length"] for e in entries),
                    "record_count": total_rows,
                },
            }
            if options.get("verbose"):
                manifest["schema"] = {
                    "elements": [{"name": n, "type": {"base": t}} for n, t in columns]
                }
            s3.put_object(
                Bucket=bucket, Key=f"{prefix}manifest", Body=json.dumps(manifest).encode()
            )
        return total_rows, len(entries), target
