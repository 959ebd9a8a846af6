"""The unattended daily run: `make cron`, or from any folder and any environment
`/path/to/repo/.venv/bin/python /path/to/repo/workflow/scripts/cron.py [options]`.

An alias of `lead-recovery cron` for this repository (lead_recovery/cli/cron.py);
`--help` lists the options and examples.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run by a Python without the package installed: still found

from lead_recovery.cli.cron import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], repo=REPO))
