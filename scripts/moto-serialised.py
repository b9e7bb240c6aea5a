"""moto's server with one request handled at a time.

DynamoDB transactions are serializable. moto_server serves each connection on its own thread,
and its TransactWriteItems rolls a failed transaction back by restoring a copy of the tables
taken when that transaction started, which also erases whatever concurrent requests wrote in
between (moto 5.2.5, seen as "work lost" in the concurrency tests). Holding one lock around
the whole WSGI call, body included, makes every request atomic with respect to every other,
as DynamoDB's are. Connections stay threaded, so an idle keep-alive connection of one client
never blocks another client: only the handling of requests is serialised.

Usage: python moto-serialised.py -H 127.0.0.1 -p PORT   (the arguments of moto_server)
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_request_lock = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__


def _dispatch_one_at_a_time(self, environ, start_response):
    with _request_lock:
        # Materialise the body inside the lock: a lazily produced body would otherwise read
        # the tables after another request had started changing them.
        return list(_dispatch(self, environ, start_response))


DomainDispatcherApplication.__call__ = _dispatch_one_at_a_time

if __name__ == "__main__":
    server.main()
