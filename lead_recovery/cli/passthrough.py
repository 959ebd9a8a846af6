"""Snakemake arguments given after ``--``, merged with the wrapper's own so none is dropped.

Snakemake keeps only the last occurrence of an option that takes a list:
``snakemake --config a=1 --config b=2`` runs with ``b=2`` alone (argparse's
``store``). ``lead-recovery run`` passes its own ``--config recipe=R ...``, so
a user's ``-- --config KEY=VALUE`` used to vanish without a word. Here every
occurrence of such an option, the wrapper's and the user's, becomes one, the
wrapper's values first: where both set a key, the user's value wins, as it
does in Snakemake's own ``--config a=1 a=2``.

The grouping is argparse's: a list option takes the words that follow it up to
the next option (``--config a=1 rules`` makes ``rules`` a config entry, in
Snakemake too), ``--config=a=1`` and ``-Ca=1`` take exactly one, and ``-nC``
is ``-n -C``. An abbreviated list option (``--forcer``) is refused: its
values could not be merged, and argparse would expand it behind our back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lead_recovery.cli.common import UsageError

# Snakemake's options that take a list of values (nargs "*" or "+", stored: the last
# occurrence wins), each spelling with its canonical name. Plugin options are left
# out. tests/unit/test_passthrough.py checks this against the installed Snakemake.
_LIST_SPELLINGS = (
    ("--config", "-C"),
    ("--configfile", "--configfiles"),
    ("--forcerun", "-R"),
    ("--until", "-U"),
    ("--omit-from", "-O"),
    ("--prioritize", "-P"),
    ("--quiet", "-q"),
    ("--allowed-rules",),
    ("--cache",),
    ("--resources", "--res"),
    ("--set-threads",),
    ("--set-resources",),
    ("--set-scatter",),
    ("--set-resource-scopes",),
    ("--default-resources", "--default-res"),
    ("--preemptible-rules",),
    ("--envvars",),
    ("--rerun-triggers",),
    ("--consider-ancient",),
    ("--strict-dag-evaluation",),
    ("--groups",),
    ("--group-components",),
    ("--cleanup-metadata", "--cm"),
    ("--wait-for-files",),
    ("--omit-flags",),
    ("--unneeded-temp-files",),
    ("--shared-fs-usage",),
    ("--logger",),
    ("--software-deployment-method", "--deployment-method", "--deployment", "--sdm"),
    ("--target-jobs",),
)
LIST_OPTIONS: dict[str, str] = {s: names[0] for names in _LIST_SPELLINGS for s in names}
# Snakemake's one-letter options that take no value, which argparse lets a user bundle.
SHORT_FLAGS = frozenset("DFSafhklnptv")
# Snakemake's options whose names begin another's, which are not abbreviations of it.
WHOLE_NAMES = frozenset({"--force"})
DRY_RUN = frozenset({"-n", "--dry-run", "--dryrun"})
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")


def _is_option(token: str) -> bool:
    """Whether argparse reads ``token`` as an option (which ends a list of values)."""
    return (
        token.startswith("-") and token != "-" and not _NEGATIVE.match(token) and " " not in token
    )


@dataclass
class Passthrough:
    """The arguments after ``--``, taken apart: list options gathered, the rest as given."""

    plain: list[str] = field(default_factory=list)  # every other token, in order
    lists: dict[str, list[str]] = field(default_factory=dict)  # canonical name: values
    after: list[str] = field(default_factory=list)  # what follows a "--" of its own
    dry_run: bool = False

    def config_keys(self) -> set[str]:
        """The top-level keys the user's ``--config`` entries set."""
        return {entry.split("=", 1)[0] for entry in self.lists.get("--config", [])}

    def command(self, own_config: Sequence[str] = ()) -> list[str]:
        """The arguments for Snakemake: the plain ones in their order, then each list
        option once (``--config`` last, the wrapper's entries before the user's), so a
        list option never swallows a word that was not its own."""
        lists = dict(self.lists)
        config = [*own_config, *lists.pop("--config", [])]
        args = list(self.plain)
        for option, values in lists.items():
            args += [option, *values]
        if config or "--config" in self.lists:
            args += ["--config", *config]
        return args + (["--", *self.after] if self.after else [])


def parse(extra: Sequence[str]) -> Passthrough:
    """``extra`` taken apart as Snakemake's argparse would group it; a form whose
    values could not be merged is a :class:`UsageError` saying how to write it."""
    found = Passthrough()
    tokens = list(extra)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            found.after = tokens[i:]
            break
        if not _is_option(token):
            found.plain.append(token)
            continue
        option, explicit = _list_option(token, found)
        if option is None:
            found.plain.append(token)
            continue
        values = found.lists.setdefault(option, [])
        if explicit is not None:  # --config=a=1, -Ca=1: exactly this one value
            values.append(explicit)
            continue
        while i < len(tokens) and not _is_option(tokens[i]) and tokens[i] != "--":
            values.append(tokens[i])
            i += 1
    return found


def _list_option(token: str, found: Passthrough) -> tuple[str | None, str | None]:
    """(canonical list option, its ``=`` or attached value) if ``token`` starts one;
    bundled flags before it (``-n`` of ``-nC``) go to ``found.plain``."""
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        if name in LIST_OPTIONS:
            return LIST_OPTIONS[name], value if eq else None
        if name in DRY_RUN:
            found.dry_run = True
        if name in DRY_RUN or name in WHOLE_NAMES:
            return None, None
        meant = sorted({LIST_OPTIONS[o] for o in LIST_OPTIONS if o.startswith(name)})
        if meant and len(name) > 2:
            raise UsageError(
                f"-- {token}: write Snakemake's option in full ({' or '.join(meant)}), "
                "so that its values are merged with lead-recovery's own"
            )
        return None, None
    letters = token[1:]
    flags = 0
    while flags < len(letters) and letters[flags] in SHORT_FLAGS:
        flags += 1
    if "n" in letters[:flags]:
        found.dry_run = True
    if flags < len(letters) and f"-{letters[flags]}" in LIST_OPTIONS:
        if flags:
            found.plain.append(f"-{letters[:flags]}")
        rest = letters[flags + 1 :]
        return LIST_OPTIONS[f"-{letters[flags]}"], rest or None
    return None, None
