"""Arrow types for the cursor's columns, and driver rows as record batches.

The cursor path converts each FETCH column by column, with the type taken
from the cursor's type OIDs (and NUMERIC's typmod), so an empty result keeps
its schema and the Parquet file has the same types whatever the rows hold.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import pyarrow as pa

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.messages import one_line

_UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)
_SIMPLE_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),  # bool
    17: pa.binary(),  # bytea
    18: pa.string(),  # "char"
    19: pa.string(),  # name
    20: pa.int64(),  # int8
    21: pa.int16(),  # int2
    23: pa.int32(),  # int4
    25: pa.string(),  # text
    26: pa.int64(),  # oid
    700: pa.float32(),  # float4
    701: pa.float64(),  # float8
    705: pa.string(),  # unknown (untyped literal)
    1042: pa.string(),  # char(n) / bpchar
    1043: pa.string(),  # varchar
    1082: pa.date32(),  # date
    1083: pa.time64("us"),  # time
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz, always UTC
}


def numeric_type(typmod: int) -> pa.DataType:
    """Exact decimal for NUMERIC(p, s); unconstrained NUMERIC becomes decimal(38, 10)."""
    if typmod is None or typmod < 4:
        return _UNCONSTRAINED_NUMERIC
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0xFFFF
    if not 0 < precision <= 76 or scale > precision:
        return _UNCONSTRAINED_NUMERIC
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def arrow_type(type_oid: int, typmod: int = -1) -> pa.DataType | None:
    """The Arrow type for a column; ``None`` means "not known: kept as text"."""
    if type_oid == 1700:
        return numeric_type(typmod)
    return _SIMPLE_TYPES.get(type_oid)


def result_schema(cursor: Any) -> tuple[pa.Schema, list[bool]]:
    """Schema of the cursor's current result, and which columns are stringified."""
    row_desc = (getattr(cursor, "ps", None) or {}).get("row_desc") or []
    description = cursor.description or []
    fields, stringify = [], []
    for i, column in enumerate(description):
        name, type_oid = column[0], column[1]
        typmod = row_desc[i].get("type_modifier", -1) if i < len(row_desc) else -1
        typ = arrow_type(type_oid, typmod)
        stringify.append(typ is None)
        fields.append(pa.field(str(name), typ if typ is not None else pa.string()))
    return pa.schema(fields), stringify


def rows_to_batch(rows: Any, schema: pa.Schema, stringify: list[bool]) -> pa.RecordBatch:
    """Driver rows to one record batch, column by column."""
    arrays = []
    for index, (fld, as_text) in enumerate(zip(schema, stringify, strict=True)):
        values = list(map(itemgetter(index), rows))
        if as_text:
            values = [None if v is None else str(v) for v in values]
        try:
            arrays.append(pa.array(values, type=fld.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as err:
            raise LeadRecoveryError(
                f"column '{fld.name}' does not fit {fld.type}: {one_line(str(err))[:200]}; "
                "cast it in the SQL (e.g. ::numeric(38,4) or ::varchar)"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
