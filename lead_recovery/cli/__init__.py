"""Command-line entry points: ``markers`` (the marker helper) and ``lead-recovery``.

Kept import-light: each command imports what it needs when it runs, so
``markers list`` starts in a few tens of milliseconds.
"""
