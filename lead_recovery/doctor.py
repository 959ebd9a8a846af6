"""``lead-recovery doctor``: can this checkout run? One :class:`Check` per line.

The first thing to run on a new machine, after new credentials or a changed
``config/config.yaml`` (docs/redshift.md starts with it). In order:

- the configuration: ``config/config.yaml`` against the workflow's schema;
- every recipe: ``meta.yml`` loads, the SQL parses as Redshift SQL,
  ``analyzer.py`` imports (:func:`lead_recovery.recipes.check_all`), one line
  per problem naming its file;
- the store: a probe object created, refused at a stale version and when
  created again, replaced at its own version and deleted, through the
  :class:`~lead_recovery.store.Store` protocol alone (the same steps on a folder
  and on S3: the bucket, the credentials, conditional writes), and the store's
  clock against this host's, as information;
- the warehouse: :func:`lead_recovery.warehouse.check` (connects with a short
  timeout and runs ``SELECT 1``; for Redshift the way in, TLS, single node, and
  the UNLOAD settings when ``redshift.extract`` is unload or auto).

Each check is a small function of what it needs; :func:`run` only puts them
together. ``ok`` is True, False (a run would fail) or None (unknown: not a
failure). Nothing here writes a marker or an extract: the one object written
is the probe, under ``markers/.leases/.doctor/``, deleted again. No detail
holds a secret: the checks never put one in, and :func:`run` replaces any
credential value of the environment that reached a line anyway.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lead_recovery import aws, layout, store
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import Check
from lead_recovery.warehouse import check as warehouse_check

PROBE_FOLDER = f"{layout.LEASES}/.doctor"  # never a lease's name (layout.parse_lease_name)
SECRET_VARS = ("REDSHIFT_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
CONDITIONAL = "store conditional writes"


def run(
    repo: str | Path, environ: Mapping[str, str] | None = None, timeout_s: float = 10
) -> list[Check]:
    """Every check of the workflow at ``repo``, in order. Raises :class:`LeadRecoveryError`
    (one line) only when ``config/config.yaml`` cannot be read at all; a configuration
    that does not match the schema is a failed check, and nothing else is checked."""
    repo = Path(repo)
    environ = os.environ if environ is None else environ
    checked, config = configuration(repo, lr_config.read(repo))
    if config is None:
        return [checked]
    config = in_repo(repo, config)
    checks = [checked, *recipe_checks(repo, config["recipes_dir"])]
    checks += store_checks(config, repo)
    checks += warehouse_check(config, environ, timeout_s)
    hidden = secrets(environ, config["redshift"]["env_file"])
    return [c._replace(detail=aws.redact(_hide(c.detail, hidden))) for c in checks]


def failed(checks: list[Check]) -> list[str]:
    """The names of the checks that failed (an unknown one has not)."""
    return [c.name for c in checks if c.ok is False]


# -- the configuration ---------------------------------------------------------------------


def configuration(repo: Path, raw: dict[str, Any]) -> tuple[Check, dict[str, Any] | None]:
    """``config/config.yaml`` against the schema; the configuration with its defaults, or
    ``None`` when it does not match."""
    try:
        config = lr_config.validate(copy.deepcopy(raw), repo / lr_config.SCHEMA_FILE)
    except LeadRecoveryError as err:
        problem = str(err).removeprefix("config: ")
        detail = f"{lr_config.CONFIG_FILE}: {problem} (every key: config/README.md)"
        return Check("config", False, detail), None
    return Check("config", True, f"{lr_config.CONFIG_FILE} matches the schema"), config


def in_repo(repo: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the files a run opens from the workflow folder (the demo warehouse,
    ``.env``) named so that this process opens the same ones, wherever it runs."""
    config = copy.deepcopy(config)
    config["duckdb"]["path"] = _shown(repo / config["duckdb"]["path"])
    if config["redshift"].get("env_file"):
        config["redshift"]["env_file"] = _shown(repo / config["redshift"]["env_file"])
    return config


def _shown(path: Path) -> str:
    """``path`` relative to the current directory if it is below it, else absolute."""
    path = Path(os.path.abspath(path))
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# -- the recipes -----------------------------------------------------------------------------


def recipe_checks(repo: Path, recipes_dir: str) -> list[Check]:
    """One line for every recipe together when all are fine, else one per problem."""
    folder = repo / recipes_dir
    problems = lr_recipes.check_all(folder)
    if problems:
        return [
            Check(f"recipe {p.recipe}" if p.recipe else "recipes", False, str(_relative(p, repo)))
            for p in problems
        ]
    count = len(lr_recipes.discover(folder))
    if count == 0:
        return [Check("recipes", None, f"none in {recipes_dir}/: a run has nothing to do")]
    return [Check("recipes", True, f"{count} in {recipes_dir}/ load, parse and import")]


def _relative(problem: lr_recipes.Problem, repo: Path) -> lr_recipes.Problem:
    """The problem with its file named from the workflow folder (``recipes/x/redshift.sql``)."""
    with contextlib.suppress(ValueError):
        return dataclasses.replace(problem, path=problem.path.relative_to(repo))
    return problem


# -- the store ---------------------------------------------------------------------------------

# What to do about a store failure, by the words store.py says it in.
_STORE_HINTS = (
    ("no such bucket", "create the bucket, or correct store: in config/config.yaml"),
    (
        "credentials were rejected",
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    ),
    (
        "access denied",
        "the caller needs s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket "
        "on the store's prefix",
    ),
    ("cannot reach", "check AWS_ENDPOINT_URL, AWS_REGION and the network"),
    ("permission denied", "store_group and store_umask: docs/operations.md"),
)


def store_hint(message: str) -> str:
    """``message`` with what to do about it, when it is a failure we know."""
    for words, hint in _STORE_HINTS:
        if words in message.lower():
            return f"{message}; {hint}"
    return message


def store_checks(config: Mapping[str, Any], repo: Path) -> list[Check]:
    """The store the configuration names: usable, conditional writes honoured, its clock."""
    try:
        opened = store.open_store(config, base=repo)
        with _umask_of(config):
            return _store(opened, store.is_checkout_store(config))
    except LeadRecoveryError as err:  # a store_group that is no group, a store: that is no store
        return [Check("store", False, str(err))]


@contextlib.contextmanager
def _umask_of(config: Mapping[str, Any]) -> Iterator[None]:
    """What a run creates in the store is created with the run's permissions
    (``store_umask``); this process's own umask is put back afterwards."""
    previous = os.umask(0o077)
    try:
        store.share(config)
        yield
    finally:
        os.umask(previous)


def _store(opened: store.Store, own: bool) -> list[Check]:
    where = opened.url + (" (this checkout's results_dir)" if own else "")
    root = opened.local_path(layout.MARKERS)
    if root is not None and not root.parent.is_dir():
        store.writable_folder("store", root.parent)  # raises (one line) if it cannot be made
        later = "not checked: the store does not exist yet"
        return [
            Check("store", True, f"{where}: not created yet; the first run creates it"),
            Check(CONDITIONAL, None, later),
            Check("store clock", None, later),
        ]
    probed = probe(opened)
    if probed[0].ok is False:
        return [
            probed[0]._replace(detail=f"{where}: {probed[0].detail}"),
            *probed[1:],
            Check("store clock", None, "not checked: the store cannot be used"),
        ]
    return [probed[0]._replace(detail=f"{where}: {probed[0].detail}"), *probed[1:], clock(opened)]


def probe(opened: store.Store) -> list[Check]:
    """Create a probe object, refuse it a stale version and a second creation, replace it at
    its own version, read it back, delete it: the steps a day's lease and commit take."""
    path = f"{PROBE_FOLDER}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stale = store.etag_of(b"not the probe's version")
    wrong: list[str] = []
    try:
        first = opened.put_if(path, b"lead-recovery doctor probe 1\n", None)
        if first is None:  # a name of its own refused: nothing of ours to delete
            return [
                Check("store", False, f"creating the new object {path} was refused"),
                Check(CONDITIONAL, None, "not checked: the store cannot be used"),
            ]
        try:
            if opened.put_if(path, b"lead-recovery doctor probe 2\n", None) is not None:
                wrong.append("a second creation of the object was accepted")
            if opened.put_if(path, b"lead-recovery doctor probe 3\n", stale) is not None:
                wrong.append("a write at a stale version was accepted")
            if opened.put_if(path, b"lead-recovery doctor probe 4\n", first) is None:
                wrong.append("a write at the current version was refused")
            got = opened.get(path)
        finally:
            opened.delete(path)
    except Exception as err:  # whatever the store raised is this check's answer
        message = store_hint(str(err).removeprefix(f"store {opened.url}: "))
        return [
            Check("store", False, message),
            Check(CONDITIONAL, None, "not checked: the store cannot be used"),
        ]
    if got is None or not got.data.startswith(b"lead-recovery doctor probe"):
        wrong.append("the probe object could not be read back")
    if wrong:
        return [
            Check("store", True, "writable (a probe object written and deleted)"),
            Check(
                CONDITIONAL,
                False,
                "; ".join(wrong) + ": runs sharing this store cannot exclude each other "
                "(S3 needs conditional writes, If-None-Match and If-Match, as AWS S3 has "
                "them; a folder needs working file locks, on NFS lockd)",
            ),
        ]
    return [
        Check("store", True, "writable (a probe object written, replaced and deleted)"),
        Check(
            CONDITIONAL,
            True,
            "a stale version and a second creation refused, the current version accepted",
        ),
    ]


def clock(opened: store.Store) -> Check:
    """The store's clock, read; how far from this host's is information, never a failure:
    leases are judged by the store's clock alone."""
    before = time.time()
    try:
        theirs = opened.clock()
    except Exception as err:
        return Check("store clock", False, f"cannot be read ({err}); leases are judged by it")
    offset = theirs - (before + time.time()) / 2
    if abs(offset) < 0.05:
        apart = "the same as this host's"
    else:
        apart = f"{abs(offset):.1f} s {'ahead of' if offset > 0 else 'behind'} this host's"
    if opened.local_path(layout.MARKERS) is None:
        apart += " (S3's Date header counts whole seconds)"
    return Check(
        "store clock", True, f"{apart}; information only: leases are judged by the store's clock"
    )


# -- secrets -------------------------------------------------------------------------------------


def secrets(environ: Mapping[str, str], env_file: str | None) -> tuple[str, ...]:
    """The credential values this process could have met: never to be shown."""
    values = [environ.get(name, "") for name in SECRET_VARS]
    if env_file:
        file_values = lr_config.env_file_values(env_file)
        values += [file_values.get(name, "") for name in SECRET_VARS]
    return tuple(v for v in dict.fromkeys(values) if len(v) >= 4)


def _hide(text: str, hidden: tuple[str, ...]) -> str:
    for value in hidden:
        text = text.replace(value, "***")
    return text
