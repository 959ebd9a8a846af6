"""The cron day log: ``<log_dir>/YYYYMMDD.log``, one per day, kept ``keep_logs_days``.

Snakemake's own output and the wrapper's lines share one file, so that whoever reads
a failed night finds both in order. The wrapper's lines carry a ``cron[pid]`` tag and
each run ends with one ``result {json}`` line: ``lead-recovery cron --report`` reads
those back instead of keeping a second record.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

from lead_recovery import rundate

TAG = "cron["
_RESULT = "] result "


class DailyLog:
    """``<log_dir>/YYYYMMDD.log``, appended to; echoed to the terminal if asked."""

    def __init__(self, path: Path, echo: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.echo = path, echo
        self.file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115

    def note(self, message: str) -> list[str]:
        """The wrapper's own lines, timestamped and tagged ``cron[pid]``; returns them."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        lines = [f"{stamp} {TAG}{os.getpid()}] {text}" for text in message.splitlines() or [""]]
        self.file.write("".join(line + "\n" for line in lines))
        self.file.flush()
        if self.echo:
            print(*lines, sep="\n", flush=True)
        return lines

    def result(self, result: dict) -> list[str]:
        return self.note(f"result {json.dumps(result)}")


def prune_logs(log_dir: Path, today: str, keep_days: int) -> list[str]:
    """Delete ``YYYYMMDD.log`` files dated more than ``keep_days`` days before today."""
    oldest = rundate.days_before(today, keep_days)
    doomed = [p for p in sorted(log_dir.glob("*.log")) if re.fullmatch(r"\d{8}\.log", p.name)]
    doomed = [p for p in doomed if p.name[:8] < oldest and p.is_file()]
    for path in doomed:
        path.unlink(missing_ok=True)
    return [p.name for p in doomed]


def report(log_path: Path, as_json: bool) -> str:
    """The wrapper's lines of a day's log, or (``as_json``) its runs' results."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    ours = [line for line in lines if f" {TAG}" in line]
    if as_json:
        results = [line.split(_RESULT, 1)[1] for line in ours if _RESULT in line]
        return json.dumps([json.loads(r) for r in results], indent=2)
    return "\n".join(line for line in ours if _RESULT not in line) or "no cron run that day"
