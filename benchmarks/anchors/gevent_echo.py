"""Anchor: gevent's own StreamServer running the lesson's upper-case echo handler.

usage: python gevent_echo.py PORT
"""

import signal
import sys

import gevent
from gevent.server import StreamServer


def talk(conn, address):
    while data := conn.recv(65536):
        conn.sendall(data.upper())
    conn.close()


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), talk, backlog=4096)
    server.start()
    print(f"listening on 127.0.0.1:{server.server_port} model=anchor-gevent", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    server.serve_forever()
