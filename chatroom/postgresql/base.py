"""Django's PostgreSQL backend, but for how a kept connection is checked before reuse.

With persistent connections and ``CONN_HEALTH_CHECKS``, Django checks a connection with a
``SELECT 1`` at the start of each request, and Channels' ``database_sync_to_async`` starts one
per call: every socket call and every bot-worker step paid a round trip more (bench/: a third of
a message's database round trips; py-spy: ~13 % of daphne's busy samples at N = 10).

The check here looks at the connection instead. A server that ends a connection (a restart,
``pg_terminate_backend``, an idle timeout) sends an error and closes the socket, so the socket
of an ended connection is readable while an idle healthy one has nothing to read: one
``poll`` with no wait. A connection in a failed or unknown state is not reused either. What it
cannot see is a network path that died without a word, which ``SELECT 1`` would only find
after a TCP time-out as well.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq

_REUSABLE = (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS)


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.info.transaction_status not in _REUSABLE:
            return False
        try:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)  # anything to read while idle: the server's farewell
        except (OSError, ValueError):
            return False
