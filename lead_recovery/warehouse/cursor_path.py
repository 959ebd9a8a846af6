"""The cursor path: DECLARE, FETCH FORWARD in batches, one batch fetched ahead.

::

    BEGIN; SET statement_timeout TO <ms>;
    /* lead_recovery recipe=X run_date=YYYYMMDD */
    DECLARE lr_<id> CURSOR FOR <recipe SQL, :run_date bound as $1>;
    FETCH FORWARD <batch_size> FROM lr_<id>;   -- until a short batch
    CLOSE lr_<id>; ROLLBACK;

A single-node cluster refuses FETCH above 1000 rows: on that refusal the
cursor is declared again in a fresh transaction on the same connection and
fetched 1000 rows at a time. A result over the cursor-data cap fails at the
first FETCH; :class:`OverCursorCap` hands that to the warehouse, which
decides between UNLOAD and a one-line error.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import queue
import secrets as _secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.arrow_types import result_schema, rows_to_batch
from lead_recovery.warehouse.messages import is_cursor_cap, is_single_node_refusal

log = logging.getLogger("lead_recovery")

SINGLE_NODE_FETCH_LIMIT = 1000

_cursor_ids = itertools.count(1)
_DONE = object()
_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


class Owner(Protocol):
    """What the cursor path needs from the warehouse that opened the connection."""

    def discard(self, conn: Any) -> None: ...

    def say(self, text: str) -> str: ...

    def query_error(
        self, err: BaseException, statement: str, prefix_lines: int, conn: Any = None
    ) -> str: ...


class OverCursorCap(Exception):
    """The first FETCH hit Redshift's cursor-data cap (``cause`` is the driver's error)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while rows are fetched.

    The driver allocates a list per row and keeps a whole batch of them alive
    until it is converted, so the collector repeatedly traverses objects that
    can never form cycles: measured here, 20-25% of the fetch loop's CPU. Rows
    are still freed by reference counting the moment a batch is converted.
    Nested and concurrent pauses are counted; the collector resumes (if it
    was on) when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def cursor_name() -> str:
    """Unique per process and query, so the server log tells queries apart."""
    return f"lr_{os.getpid()}_{next(_cursor_ids)}_{_secrets.token_hex(3)}"


@dataclass
class OpenCursor:
    """A declared cursor whose first batch has been fetched."""

    name: str
    fetch: str
    fetch_size: int
    schema: pa.Schema
    stringify: list[bool]
    first: pa.RecordBatch | None
    first_rows: int
    single_node: bool


def open_cursor(
    conn: Any,
    cursor: Any,
    declare: str,
    args: Any,
    name: str,
    *,
    batch_size: int,
    single_node: bool,
    set_timeout: Callable[[Any], None],
) -> OpenCursor:
    """Declare the cursor and fetch its first batch, learning a single-node cluster.

    Raises :class:`OverCursorCap` for the cursor-data cap; any other driver
    error is raised as it is, for the caller to word.
    """
    fetch_size = min(batch_size, SINGLE_NODE_FETCH_LIMIT) if single_node else batch_size
    while True:
        fetch = f"FETCH FORWARD {fetch_size} FROM {name}"
        try:
            set_timeout(cursor)
            cursor.execute(declare, args)
            with gc_paused():
                cursor.execute(fetch)
                schema, stringify = result_schema(cursor)
                first = cursor.fetchall()
                first_batch = rows_to_batch(first, schema, stringify) if first else None
            return OpenCursor(
                name, fetch, fetch_size, schema, stringify, first_batch, len(first), single_node
            )
        except LeadRecoveryError:
            raise
        except Exception as err:
            if fetch_size > SINGLE_NODE_FETCH_LIMIT and is_single_node_refusal(err):
                conn.rollback()  # a fresh transaction on the same connection
                single_node = True
                fetch_size = min(batch_size, SINGLE_NODE_FETCH_LIMIT)
                log.info(
                    "redshift: single-node cluster (it refused FETCH FORWARD %d); "
                    "fetching %d rows per FETCH",
                    batch_size,
                    fetch_size,
                )
                continue
            if is_cursor_cap(err):
                raise OverCursorCap(err) from None
            raise


def batches(owner: Owner, conn: Any, cursor: Any, opened: OpenCursor) -> Iterator[pa.RecordBatch]:
    """The batches: the first one, then those a fetcher thread prepares.

    The fetcher runs the FETCH loop and the conversion one batch ahead of
    the consumer, so the consumer's Parquet encoding (which releases the
    GIL) overlaps the next fetch. At most three batches exist at once: one
    being written, one queued, one being fetched.
    """
    first = opened.first
    opened.first = None
    if opened.first_rows < opened.fetch_size:
        try:
            if first is not None:
                yield first
            finish(owner, conn, cursor, opened.name)
        finally:
            owner.discard(conn)
        return
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    fetcher = threading.Thread(
        target=_fetch_ahead,
        args=(owner, conn, cursor, opened, handoff, stop),
        name=f"redshift-{opened.name}",
        daemon=True,
    )
    fetcher.start()
    try:
        if first is not None:
            yield first
        del first
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            handoff.get_nowait()  # unblock a fetcher waiting to hand over


def _fetch_ahead(
    owner: Owner,
    conn: Any,
    cursor: Any,
    opened: OpenCursor,
    handoff: queue.Queue,
    stop: threading.Event,
) -> None:
    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        with gc_paused():
            _fetch_loop(owner, conn, cursor, opened, hand_over, stop)
        if not stop.is_set():
            finish(owner, conn, cursor, opened.name)
            hand_over(_DONE)
    except BaseException as err:  # handed to the consumer, raised there
        hand_over(err)
    finally:
        owner.discard(conn)


def _fetch_loop(
    owner: Owner,
    conn: Any,
    cursor: Any,
    opened: OpenCursor,
    hand_over: Callable[[Any], bool],
    stop: threading.Event,
) -> None:
    rows_so_far = opened.first_rows
    more = True
    while more and not stop.is_set():
        try:
            cursor.execute(opened.fetch)
            rows = cursor.fetchall()
        except Exception as err:
            cause = owner.query_error(err, opened.fetch, 0, conn)
            raise LeadRecoveryError(owner.say(f"{cause} (after {rows_so_far} rows)")) from None
        more = len(rows) == opened.fetch_size
        if rows:
            rows_so_far += len(rows)
            batch = rows_to_batch(rows, opened.schema, opened.stringify)
            del rows  # before the next FETCH fills the driver's buffer
            if not hand_over(batch):
                return
            del batch


def finish(owner: Owner, conn: Any, cursor: Any, name: str) -> None:
    """Close the cursor and end the read-only transaction; a failure is only a warning."""
    try:
        cursor.execute(f"CLOSE {name}")
        conn.rollback()  # read-only: nothing to commit
    except Exception as err:
        log.warning("redshift: closing cursor %s failed: %s", name, owner.say(str(err)))
