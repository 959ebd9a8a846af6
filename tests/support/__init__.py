"""Test rig shared by the test suite and the benchmarks.

``pgserver`` starts a throw-away PostgreSQL from the system binaries;
``redshift_shim`` is the TCP proxy that lets ``redshift_connector`` talk to it.
Both use only the standard library so benchmarks and subprocesses can use them.
"""
