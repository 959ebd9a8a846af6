"""The store: where what a query paid for lives, and where runs coordinate.

A store is a folder (``store: /srv/lead-recovery``, on one machine or NFS) or
an S3 prefix (``store: s3://bucket/prefix``); with no ``store:`` it is the
checkout's own ``results_dir``. The layout below its root is the same on both
(``lead_recovery/layout.py``), and everything that reads or writes it goes
through the few operations of :class:`Store`, written once for each kind:

- ``get`` / ``put_if``: a small object with its version (an ETag) and a write
  that happens only if the object is still at the version the writer read
  (S3's ``If-Match`` / ``If-None-Match: *``; on a folder the same check made
  under a lock every writer of that folder takes). Leases and the commit of a
  day's pair are built on these, so no decision compares two hosts' clocks
  and no stale writer can overwrite a newer one (lease.py);
- ``put_file`` / ``fetch``: an extract, written once under a name of its own
  and never modified, and a checkout's copy of it (a hard link on a folder);
- ``clock``: the store's own time (S3's ``Date``; the time a file server
  stamps on a file written now), the only clock leases are judged by.

Paths are relative to the root, ``/``-separated, and never climb out of it.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store.base import (
    LOCK_WAIT_S,
    SENTINEL,
    SMALL,
    Entry,
    Got,
    Store,
    StoreError,
    TooLarge,
    clean,
    clean_or_root,
    etag_of,
    read_at_most,
)
from lead_recovery.store.folder import FolderStore
from lead_recovery.store.s3 import S3Store, parse_url

__all__ = [
    "LOCK_WAIT_S",
    "SENTINEL",
    "SMALL",
    "Entry",
    "FolderStore",
    "Got",
    "S3Store",
    "Store",
    "StoreError",
    "TooLarge",
    "read_at_most",
    "clean",
    "clean_or_root",
    "etag_of",
    "is_checkout_store",
    "open_store",
    "parse_url",
    "share",
    "shared_ground",
    "writable_folder",
]


def open_store(config: Mapping[str, Any], *, base: str | Path = ".") -> FolderStore | S3Store:
    """The store the configuration names: ``store:`` (an S3 prefix or a folder, relative
    to ``base``), else the checkout's own ``results_dir``."""
    url = config.get("store")
    if url in (None, ""):
        return FolderStore(Path(base) / str(config["results_dir"]))
    url = str(url)
    if url.startswith("s3://"):
        return S3Store(url)
    if "://" in url:
        raise LeadRecoveryError(f"store {url!r}: only folders and s3://bucket/prefix are stores")
    if ".." in Path(url).parts:
        raise LeadRecoveryError(f"store {url!r}: '..' may not appear in the store's folder")
    return FolderStore(Path(base) / url)


def is_checkout_store(config: Mapping[str, Any]) -> bool:
    """Whether the store is the checkout's own results folder (no ``store:``)."""
    return config.get("store") in (None, "")


def writable_folder(key: str, folder: Path) -> None:
    """A folder this run will write to: writable, or creatable under its nearest existing
    parent; else one line naming it. Read-only (dry runs call it too)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LeadRecoveryError(
            f"{key} {folder}/ cannot be created: {existing} is not a folder; nothing was run"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LeadRecoveryError(
            f"{key} {folder}/ is not writable by this user ({existing}/); nothing was run "
            "(store_group and store_umask: docs/operations.md)"
        )


def shared_ground(config: Mapping[str, Any], base: str | Path = ".") -> list[Path]:
    """The folders a checkout writes on shared ground, for :func:`share`: its results
    and logs, and the store when it is a folder (with no ``store:``, its results)."""
    base = Path(base)
    folders = [base / str(config["results_dir"]), base / str(config["logs_dir"])]
    opened = open_store(config, base=base)
    if isinstance(opened, FolderStore):
        folders.append(opened.root)
    found: dict[str, Path] = {}
    for folder in folders:
        found.setdefault(os.path.abspath(folder), folder)
    return list(found.values())


def share(config: Mapping[str, object], folders: list[Path] | None = None) -> None:
    """Make what this process (and its jobs, which inherit the umask) creates shareable:
    every command that writes on shared ground calls it first, with the folders it
    writes below (:func:`shared_ground`; none: the umask alone).

    Extracts hold names and phone numbers: by default (``store_umask: 007``)
    files are 660 and folders 770, for the team and nobody else. With
    ``store_group`` the given top folders belong to that group and carry the
    setgid bit, so every file and folder below them does too, whoever creates it.
    """
    os.umask(int(str(config.get("store_umask") or "007"), 8))
    group = config.get("store_group")
    if not group:
        return
    try:
        gid = grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise LeadRecoveryError(f"store_group {group!r} is not a group on this machine") from None
    for folder in folders or []:
        folder.mkdir(parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_gid == gid and info.st_mode & stat.S_ISGID:
            continue
        try:
            os.chown(folder, -1, gid)
            os.chmod(folder, stat.S_IMODE(info.st_mode) | stat.S_ISGID | 0o070)
        except PermissionError:
            raise LeadRecoveryError(
                f"store_group {group!r}: cannot give {folder}/ to that group "
                "(its owner, or root, must do it once: chgrp and chmod g+ws)"
            ) from None
