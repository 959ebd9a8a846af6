"""``python -m lead_recovery.cli ...`` is ``lead-recovery ...``."""

import sys

from lead_recovery.cli.main import main

sys.exit(main())
