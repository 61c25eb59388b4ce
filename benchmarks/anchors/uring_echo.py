"""Anchor: the least io_uring echo written on the same binding (uring-api) as the io_uring model.

One multishot accept; per connection one multishot recv into a shared provided-buffer pool; each
reply one send-all; nothing else (no sessions, no backpressure, no graceful stop). The ring is set up
with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN unless ``plain`` is given.

usage: python uring_echo.py PORT [plain]
"""

import signal
import socket
import sys

import uring_api as u


def main(port: int, flags: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    ring = u.Ring(entries=1024, cq_entries=8192, flags=flags)
    pool = ring.create_buf_group(4096, 2048)
    accept = object()
    ring.prepare_accept_multishot(listener.fileno(), 0, accept)
    socks = {}
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]} model=anchor-io_uring", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    kind_recv, kind_send = u.COMPLETION_KIND_RECV_MULTISHOT, u.COMPLETION_KIND_SEND_ALL
    more_flag = u.IORING_CQE_F_MORE
    while not stop:
        try:
            batch = ring.wait(0.5) or ()
        except InterruptedError:
            continue
        for c in batch:
            kind = c.kind
            if kind == kind_recv:
                more = c.flags & more_flag
                fd = c.user_data if more else c.take_user_data()
                if c.res > 0:
                    ring.prepare_send_all(fd, bytes(c.result).upper(), 0, fd)
                elif not more:
                    if c.res == -105:  # ENOBUFS: the pool was empty for a moment, read again
                        ring.prepare_recv_multishot(fd, pool, 0, fd)
                    else:
                        socks.pop(fd).close()
                        continue
                if not more and c.res > 0:
                    ring.prepare_recv_multishot(fd, pool, 0, fd)
            elif kind == kind_send:
                c.take_user_data()
            elif c.user_data is accept and c.res >= 0:
                sock = socket.socket(fileno=c.res)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks[c.res] = sock
                ring.prepare_recv_multishot(c.res, pool, 0, c.res)
    ring.close()


if __name__ == "__main__":
    plain = sys.argv[2:] == ["plain"]
    main(int(sys.argv[1]), 0 if plain else u.IORING_SETUP_SINGLE_ISSUER | u.IORING_SETUP_DEFER_TASKRUN)
