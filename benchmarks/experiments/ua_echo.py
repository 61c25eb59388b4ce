"""Experiment: the binding. A single-shot recv into a per-connection buffer, then a send, on uring-api.

The same loop as lu_echo.py, so that the two bindings are compared on equal terms (the Cython
liburing has no safe batch reap or provided-buffer ring to match the model's loop; see README.md).

usage: python ua_echo.py PORT
"""

import signal
import socket
import sys

import uring_api as u


def main(port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    ring = u.Ring(entries=1024, cq_entries=8192,
                  flags=u.IORING_SETUP_SINGLE_ISSUER | u.IORING_SETUP_DEFER_TASKRUN)
    accept = object()
    ring.prepare_accept_multishot(listener.fileno(), 0, accept)
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytearray] = {}
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]} model=experiment-uring-api", flush=True)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    kind_recv, kind_send = u.COMPLETION_KIND_RECV, u.COMPLETION_KIND_SEND
    while not stop:
        try:
            batch = ring.wait(0.5) or ()
        except InterruptedError:
            continue
        for c in batch:
            kind = c.kind
            if kind == kind_recv:
                fd = c.take_user_data()
                res = c.res
                if res > 0:
                    ring.prepare_send(fd, bytes(bufs[fd][:res]).upper(), 0, None)
                    ring.prepare_recv(fd, bufs[fd], 0, fd)
                else:
                    socks.pop(fd).close()
            elif kind == kind_send:
                pass
            elif c.user_data is accept and c.res >= 0:
                fd = c.res
                sock = socks[fd] = socket.socket(fileno=fd)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                bufs[fd] = bytearray(65536)
                ring.prepare_recv(fd, bufs[fd], 0, fd)


if __name__ == "__main__":
    main(int(sys.argv[1]))
