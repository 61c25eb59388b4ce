"""Experiment: the binding. The loop of ua_echo.py on PyPI's Cython ``liburing`` 2024.5.3.

Needs its own environment (not a dependency of iomodels; 2026.3.x, a Zig rewrite, dies with
SIGILL in ``Ring()`` on these machines):
    python -m venv /tmp/lu && /tmp/lu/bin/pip install liburing==2024.5.3
    /tmp/lu/bin/python lu_echo.py PORT

The listener is watched with a poll SQE and accepted in Python (its multishot accept needs a
sockaddr); the connections are opened before the measurement, so that costs nothing measured.
Completions are reaped one at a time (peek + seen): its batch peek is unsafe (it writes an array of
pointers into one pointer's room).
"""

import select
import signal
import socket
import sys

import liburing as lu

SINGLE_ISSUER, DEFER_TASKRUN = 1 << 12, 1 << 13
ACCEPT = 1 << 40
SEND = 1 << 32


def main(port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    ring = lu.io_uring()
    cqe = lu.io_uring_cqe()
    lu.io_uring_queue_init(1024, ring, SINGLE_ISSUER | DEFER_TASKRUN)
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytearray] = {}
    sending: dict[int, bytes] = {}  # each reply kept alive until its send completes

    def arm_accept() -> None:
        sqe = lu.io_uring_get_sqe(ring)
        lu.io_uring_prep_poll_add(sqe, listener.fileno(), select.POLLIN)
        sqe.user_data = ACCEPT

    def arm(fd: int) -> None:
        sqe = lu.io_uring_get_sqe(ring)
        lu.io_uring_prep_recv(sqe, fd, bufs[fd], 65536)
        sqe.user_data = fd

    arm_accept()
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]} model=experiment-liburing", flush=True)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        try:
            lu.io_uring_submit_and_wait(ring, 1)
        except OSError:  # EINTR
            continue
        while lu.io_uring_peek_cqe(ring, cqe) == 0:
            data = cqe.user_data
            res = cqe.res
            lu.io_uring_cqe_seen(ring, cqe)
            if data == ACCEPT:
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    fd = sock.fileno()
                    socks[fd] = sock
                    bufs[fd] = bytearray(65536)
                    arm(fd)
                arm_accept()
            elif data & SEND:
                sending.pop(data & 0xFFFFFFFF, None)
            elif res > 0:
                out = sending[data] = bytes(bufs[data][:res]).upper()
                sqe = lu.io_uring_get_sqe(ring)
                lu.io_uring_prep_send(sqe, data, out, res)
                sqe.user_data = SEND | data
                arm(data)
            else:
                socks.pop(data).close()
                bufs.pop(data, None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
