"""sigio — signal-driven IO: the kernel queues a signal whenever a socket becomes ready.

The lesson's *signal-driven IO*. Each socket is put in O_ASYNC mode with
``F_SETOWN_EX`` (deliver to this thread, which blocks the signal) and ``F_SETSIG`` (use a real-time
signal instead of plain SIGIO). Real-time signals queue, one per readiness
change, and each carries the fd and the poll band (POLLIN, POLLOUT, ...) in
its siginfo. The waiting phase costs the process nothing; the copy phase is
ordinary non-blocking ``recv``/``send``.

Because each change raises its own signal, a connection with one signal in
a batch needs no read to EAGAIN: a short read took all that signal
announced, and anything later raises another (the wait marks it ``ONCE``).
That saves a ``recv`` and an exception per request over edge-triggered epoll.

How we learn *which* fd: Python's ``sigwaitinfo`` result has no ``si_fd``, so
the signals are blocked and read from a ``signalfd`` instead (opened with
ctypes; Python has no binding): each 128-byte ``signalfd_siginfo`` record has
``ssi_fd`` and ``ssi_band``. A signal is raised per *change*, like an
edge-triggered epoll, so the loop reads and writes until EAGAIN. When the
real-time queue overflows (RLIMIT_SIGPENDING), the kernel sends plain SIGIO
with no fd; we then sweep every socket once.

Cost: a queued signal (kernel allocation) per readiness change, one
``read`` on the signalfd per batch, one thread. A stale signal for a closed
and reused fd costs one EAGAIN.

Choose it to learn the model; in practice epoll does the same job with
less machinery, and signals mix badly with libraries and threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import select
import signal
import struct
import threading

from . import ERROR, ONCE, READ, WRITE, ReadinessModel, Wait

SIG = signal.SIGRTMIN  # the real-time signal our sockets raise
_F_SETOWN_EX = getattr(fcntl, "F_SETOWN_EX", 15)  # Linux's value where Python lacks the name
_F_OWNER_TID = 0
_RECORD = 128  # sizeof(struct signalfd_siginfo)
_FIELDS = struct.Struct("=I16xi4xI")  # ssi_signo, (errno, code, pid, uid), ssi_fd, (tid), ssi_band
_SFD_FLAGS = os.O_CLOEXEC | os.O_NONBLOCK  # SFD_CLOEXEC, SFD_NONBLOCK


def _open_signalfd(signals: set[int]) -> int:
    """A non-blocking signalfd for ``signals`` (which the caller has blocked)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    mask = ctypes.create_string_buffer(128)  # sigset_t: 1024 bits
    libc.sigemptyset(mask)
    for signum in signals:
        libc.sigaddset(mask, signum)
    fd = libc.signalfd(-1, mask, _SFD_FLAGS)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"signalfd: {os.strerror(err)}")
    return fd


class SigioWait(Wait):
    edge = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.watched: set[int] = set()
        # signals go to this thread, which blocks them: another thread of the process, which
        # may not block them, never gets one (their default action would end the process)
        self.owner = struct.pack("ii", _F_OWNER_TID, threading.get_native_id())
        self.signals = {SIG, signal.SIGIO}
        self.old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        self.sfd = _open_signalfd(self.signals)

    def add(self, fd: int, events: int) -> None:
        fcntl.fcntl(fd, _F_SETOWN_EX, self.owner)
        fcntl.fcntl(fd, fcntl.F_SETSIG, SIG)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)
        self.watched.add(fd)

    def modify(self, fd: int, events: int) -> None:
        pass  # a signal comes for every change anyway

    def remove(self, fd: int) -> None:
        self.watched.discard(fd)

    def _read(self) -> bytes:
        """The queued signals' records (the signalfd is non-blocking: empty when none is queued)."""
        try:
            return os.read(self.sfd, _RECORD * 512)
        except BlockingIOError:
            return b""

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # Under load signals are already queued when the loop comes back: one read takes them.
        # Only when none is there, wait for the signalfd to become readable (or the timer).
        data = self._read()
        if not data:
            if timeout == 0 or not select.select([self.sfd], [], [], timeout)[0]:
                return []  # a timer is due before any signal came
            data = self._read()
        ready: dict[int, int] = {}
        overflow = False
        for offset in range(0, len(data), _RECORD):
            signo, fd, band = _FIELDS.unpack_from(data, offset)
            if signo == SIG:  # one signal per readiness change: ONCE while it is this fd's only one
                previous = ready.get(fd)
                band &= READ | WRITE | ERROR
                ready[fd] = band | ONCE if previous is None else (previous | band) & ~ONCE
            else:  # plain SIGIO: the real-time queue overflowed, fds unknown
                overflow = True
        if overflow:
            return [(fd, READ | WRITE) for fd in self.watched]
        return list(ready.items())

    def close(self) -> None:
        os.close(self.sfd)
        # drop signals still queued for us before unblocking, or SIGIO's default action kills us
        for signum in self.signals:
            while signal.sigtimedwait([signum], 0) is not None:
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old_mask)


class SigioModel(ReadinessModel):
    name = "sigio"
    summary = "signal-driven IO: O_ASYNC sockets raise a queued real-time signal"

    @classmethod
    def probe(cls) -> str | None:
        if not hasattr(fcntl, "F_SETSIG"):
            return "fcntl.F_SETSIG is missing (Linux-only)"
        try:
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
            try:
                os.close(_open_signalfd({SIG}))
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        except (OSError, AttributeError) as exc:
            return f"signalfd is not usable: {exc}"
        return None

    def new_wait(self) -> Wait:
        return SigioWait(self.options)
