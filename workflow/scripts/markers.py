#!/usr/bin/env python3
"""The marker helper, runnable from a checkout: ``workflow/scripts/markers.py --action list``.

An alias of ``lead-recovery markers`` (lead_recovery/cli/markers.py); see ``--help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # without the package installed

from lead_recovery.cli.markers import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
