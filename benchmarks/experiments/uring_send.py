"""Experiment (issue 13): how the minimal io_uring echo sends its replies, on the same binding.

The anchor's loop (benchmarks/anchors/uring_echo.py: multishot accept, multishot recv into a
provided-buffer pool, SINGLE_ISSUER | DEFER_TASKRUN) with one of three ways to send a reply:

- ``send_all``: ``prepare_send_all`` (the binding drains the buffer with as many sends as it takes;
  its completion comes to Python), as the anchor does;
- ``send``: one plain ``prepare_send``; its completion comes to Python with the bytes taken, and
  a short send (none seen with 1 KiB replies) is finished with a send-all of the rest;
- ``skip``: ``construct_send_all`` with ``skip_success`` (the binding drops the success completion
  before Python sees it), as the io_uring model does when nothing else of the connection is in
  flight.

It prints the number of short sends on SIGTERM (stderr).

usage: python uring_send.py PORT send_all|send|skip
"""

import signal
import socket
import sys

import uring_api as u


def main(port: int, mode: str) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    ring = u.Ring(entries=1024, cq_entries=8192,
                  flags=u.IORING_SETUP_SINGLE_ISSUER | u.IORING_SETUP_DEFER_TASKRUN)
    pool = ring.create_buf_group(4096, 2048)
    accept = object()
    ring.prepare_accept_multishot(listener.fileno(), 0, accept)
    socks = {}
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]} model=experiment-uring-{mode}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    kind_recv, kind_send, kind_send_all = (u.COMPLETION_KIND_RECV_MULTISHOT, u.COMPLETION_KIND_SEND,
                                           u.COMPLETION_KIND_SEND_ALL)
    more_flag = u.IORING_CQE_F_MORE
    short = 0
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
                    out = bytes(c.result).upper()
                    if mode == "send_all":
                        ring.prepare_send_all(fd, out, 0, fd)
                    elif mode == "send":
                        ring.prepare_send(fd, out, 0, (fd, out))
                    else:
                        h = ring.construct_send_all(fd, out, 0, fd)
                        h.skip_success = True
                        ring.prepare(h)
                elif not more:
                    if c.res == -105:  # ENOBUFS: the pool was empty for a moment, read again
                        ring.prepare_recv_multishot(fd, pool, 0, fd)
                    else:
                        socks.pop(fd).close()
                        continue
                if not more and c.res > 0:
                    ring.prepare_recv_multishot(fd, pool, 0, fd)
            elif kind == kind_send:
                fd, out = c.take_user_data()
                if 0 <= c.res < len(out):
                    short += 1
                    ring.prepare_send_all(fd, out[c.res:], 0, fd)
            elif kind == kind_send_all:
                c.take_user_data()
            elif c.user_data is accept and c.res >= 0:
                sock = socket.socket(fileno=c.res)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks[c.res] = sock
                ring.prepare_recv_multishot(c.res, pool, 0, c.res)
    ring.close()
    print(f"short sends: {short}", file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
