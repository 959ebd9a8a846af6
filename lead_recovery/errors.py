"""The one exception type users see.

Every failure a user can fix (bad config, bad recipe, unreachable warehouse) is
raised as :class:`LeadRecoveryError` with a one-line message that names the
thing to fix. Entry points print ``str(err)`` and exit non-zero instead of
showing a traceback.
"""


class LeadRecoveryError(Exception):
    """A problem the user can act on; ``str()`` is the whole message."""
