"""Lab only: make the lab's sqlite transactions take the write lock first.

cinder-api, cinder-scheduler and cinder-volume share one sqlite file in the
lab. oslo.db starts every transaction with a plain (deferred) BEGIN, so a
transaction that reads and then writes (a quota reservation) has to upgrade
its lock, and when another process wrote in between sqlite answers
"database is locked" at once instead of waiting for the busy timeout: cinder-api
then returns HTTP 500. BEGIN IMMEDIATE takes the write lock up front and
waits for it, which serialises the lab's writers instead of failing them.
A production Cinder uses MySQL or PostgreSQL and never loads this file; it
is on PYTHONPATH only for the services deploy/lab/lab.sh starts.
"""

try:
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
except ImportError:  # not a Cinder or Glance process
    sqlalchemy = None

if sqlalchemy is not None:
    @event.listens_for(Engine, "begin")
    def _sqlite_begin_immediate(conn):
        # Class-level listeners run before oslo.db's per-engine one, which
        # sees the marker and emits no BEGIN of its own.
        if conn.dialect.name != "sqlite" or "in_transaction" in conn.info:
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True
