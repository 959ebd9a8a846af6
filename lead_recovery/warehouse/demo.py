"""Build the embedded demo warehouse: seeded synthetic leads, the same every time.

Rows are a pure function of (row number, seed) through DuckDB's ``hash``, so
the file's contents do not depend on threads or on when it was built. Leads
span 2025-01-01 to 2027-12-31, so any run date in that range has data.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

_LEADS_SQL = """
CREATE TABLE leads AS
WITH base AS (
    SELECT
        i,
        hash(i, {seed}) AS h1,
        hash(i, {seed} + 1) AS h2,
        hash(i, {seed} + 2) AS h3
    FROM range({rows}) AS t(i)
), shaped AS (
    SELECT
        i,
        h1, h2, h3,
        TIMESTAMP '2025-01-01 00:00:00'
            + to_seconds(CAST(h1 % (3 * 365 * 86400) AS BIGINT)) AS created_at,
        ['web', 'referral', 'ads', 'partner', 'call_center'][1 + CAST(h2 % 5 AS INT)] AS source,
        ['Ana', 'Luis', 'Maria', 'Jose', 'Sofia', 'Carlos', 'Lucia', 'Diego'][1 + CAST(h3 % 8 AS INT)] AS first_name,
        ['Garcia', 'Lopez', 'Martinez', 'Hernandez', 'Perez', 'Sanchez'][1 + CAST((h3 >> 8) % 6 AS INT)] AS last_name
    FROM base
)
SELECT
    CAST(100000000 + i AS BIGINT) AS lead_id,
    created_at,
    first_name || ' ' || last_name AS name,
    CASE WHEN (h2 >> 4) % 10 = 0 THEN NULL
         ELSE lower(first_name) || '.' || lower(last_name) || CAST(i AS VARCHAR) || '@example.com'
    END AS email,
    CASE WHEN (h2 >> 8) % 4 = 0 THEN '+1' ELSE '+52' END
        || lpad(CAST((h1 >> 20) % 10000000000 AS VARCHAR), 10, '0') AS phone,
    source,
    CASE WHEN (h1 >> 12) % 3 = 0 THEN NULL
         ELSE created_at + to_seconds(CAST(3600 + (h3 >> 16) % (5 * 86400) AS BIGINT))
    END AS simulation_at,
    CAST(CAST(5000 + (h2 >> 16) % 195000 AS DECIMAL(12, 2)) + ((h3 >> 4) % 100) / 100.0 AS DECIMAL(12, 2)) AS loan_amount,
    CAST(1 + (h3 >> 24) % 40 AS INTEGER) AS agent_id,
    (h2 >> 28) % 50 = 0 AS is_test
FROM shaped
"""

_DERIVED_SQL = """
ALTER TABLE leads ADD COLUMN handoff_at TIMESTAMP;
UPDATE leads SET handoff_at = simulation_at + to_seconds(CAST(600 + (lead_id * 7919) % 172800 AS BIGINT))
    WHERE simulation_at IS NOT NULL AND (lead_id * 31) % 5 <> 0;
ALTER TABLE leads ADD COLUMN status VARCHAR;
UPDATE leads SET status = CASE
    WHEN handoff_at IS NOT NULL THEN 'handed_off'
    WHEN simulation_at IS NOT NULL THEN 'simulated'
    WHEN lead_id % 7 = 0 THEN 'lost'
    ELSE 'new' END;
"""


def build(path: str | Path, rows: int, seed: int) -> int:
    """Write the demo database to ``path`` atomically; returns the row count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(_LEADS_SQL.format(rows=int(rows), seed=int(seed)))
            con.execute(_DERIVED_SQL)
            count = con.execute("SELECT count(*) FROM leads").fetchone()[0]
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return count
