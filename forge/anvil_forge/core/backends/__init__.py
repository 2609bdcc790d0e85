"""Database backends of the FORGE: Django's SQLite and PostgreSQL backends with a kept pool of connections.

Under ASGI Django runs each request's sync code in a fresh thread, and its connections are per thread: with
``CONN_MAX_AGE = 0`` every request opens a new connection (on SQLite: open the file, run the PRAGMAs, read the
schema again), and with ``CONN_MAX_AGE > 0`` each finished thread leaves its connection open until the garbage
collector finds it (a file descriptor leak under load). Here a request still closes its connection when it
ends, as Django does with ``CONN_MAX_AGE = 0``, but closing hands the open connection to a small pool of this
process, and the next request's thread takes it from there. The pool is bounded (``ANVIL_DB_POOL_SIZE``,
default 8 idle connections); a connection in a transaction, broken, or idle for a minute is closed instead.
"""
