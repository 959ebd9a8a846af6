#!/usr/bin/env python3
"""The marker helper, runnable from a checkout: ``workflow/scripts/markers.py --action list``.

The same program as the ``markers`` console script; see ``markers --help``
and lead_recovery/cli/markers.py.
"""

import sys
from pathlib import Path

try:
    from lead_recovery.cli.markers import main
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from lead_recovery.cli.markers import main

if __name__ == "__main__":
    sys.exit(main())
