"""The unattended daily run: `make cron`, or from any folder and any environment
`/path/to/repo/.venv/bin/python /path/to/repo/workflow/scripts/cron.py [options]`.

The logic is in lead_recovery/cron.py; `--help` lists the options, and
README.md ("Unattended daily runs") the crontab line, the logs and the exit codes.
"""

import sys
from pathlib import Path

from lead_recovery.cron import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], repo=Path(__file__).resolve().parents[2]))
