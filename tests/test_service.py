"""The sans-IO session, tested in memory: no socket anywhere."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iomodels.service import (
    EchoService,
    Limits,
    ServiceLoadError,
    Session,
    UpperService,
    load_service,
)


def drain(session: Session, max_send: int | None = None) -> bytes:
    """Act like a socket that accepts at most ``max_send`` bytes per send."""
    out = bytearray()
    while session.pending:
        view = session.data_to_send()
        n = len(view) if max_send is None else min(max_send, len(view))
        out += bytes(view[:n])
        session.sent(n)
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=30),
       st.one_of(st.none(), st.integers(min_value=1, max_value=300)))
def test_any_split_of_any_input_yields_its_upper_case(data: bytes, cuts: list[int],
                                                      max_send: int | None) -> None:
    session = Session(UpperService())
    out = bytearray()
    for chunk in split(data, cuts):
        session.receive_data(chunk)
        out += drain(session, max_send)
    session.receive_eof()
    assert session.finished
    assert bytes(out) == data.upper()


@given(st.lists(st.binary(min_size=1, max_size=500), max_size=20),
       st.integers(min_value=1, max_value=700))
def test_queued_output_keeps_order_across_partial_sends(chunks: list[bytes], step: int) -> None:
    """Feed everything before sending anything, then send in ``step``-sized pieces."""
    session = Session(EchoService())
    for chunk in chunks:
        session.receive_data(chunk)
    assert session.pending == sum(map(len, chunks))
    assert drain(session, step) == b"".join(chunks)


def test_only_ascii_lowercase_changes() -> None:
    data = bytes(range(256))
    reply = UpperService().on_data(data)
    assert [i for i in range(256) if data[i] != reply[i]] == list(range(ord("a"), ord("z") + 1))


def test_water_marks_pause_and_resume_with_hysteresis() -> None:
    session = Session(EchoService(), Limits(high=100, low=40))
    session.receive_data(b"x" * 100)
    assert not session.reading_paused  # at the mark, not above it
    session.receive_data(b"x")
    assert session.reading_paused and session.pending == 101
    session.sent(50)
    assert session.reading_paused  # 51 left: above low, still paused
    session.sent(11)
    assert not session.reading_paused  # 40 left: resumed
    session.receive_data(b"y" * 70)
    assert session.reading_paused  # 110 > 100


def test_take_data_empties_the_queue_and_resumes() -> None:
    session = Session(UpperService(), Limits(high=4, low=0))
    session.receive_data(b"abcdef")
    assert session.reading_paused
    session.sent(2)
    session.receive_data(b"gh")
    assert session.take_data() == b"CDEFGH"
    assert session.pending == 0 and not session.reading_paused
    assert session.take_data() == b""


def test_half_close_flushes_then_finishes() -> None:
    session = Session(UpperService())
    session.receive_data(b"bye")
    session.receive_eof()
    assert session.eof_received and not session.finished  # reply still pending
    assert drain(session, 1) == b"BYE"
    assert session.finished


def test_on_eof_output_is_sent_last() -> None:
    class Counting:
        def __init__(self) -> None:
            self.seen = 0

        def on_data(self, data: bytes) -> bytes:
            self.seen += len(data)
            return b""

        def on_eof(self) -> bytes:
            return str(self.seen).encode()

    session = Session(Counting())
    session.receive_data(b"12345")
    session.receive_data(b"678")
    session.receive_eof()
    session.receive_eof()  # a second EOF changes nothing
    assert session.take_data() == b"8"


def test_data_after_eof_is_a_model_bug() -> None:
    session = Session(UpperService())
    session.receive_eof()
    with pytest.raises(RuntimeError):
        session.receive_data(b"late")


def test_sent_more_than_pending_is_refused() -> None:
    session = Session(UpperService())
    session.receive_data(b"ab")
    with pytest.raises(ValueError):
        session.sent(3)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Limits(high=10, low=20)
    with pytest.raises(ValueError):
        Limits(high=0, low=0)


class Reverser:
    def on_data(self, data: bytes) -> bytes:
        return data[::-1]

    def on_eof(self) -> bytes:
        return b""


def test_load_service_by_name_and_by_import_path() -> None:
    assert load_service("upper") is UpperService
    assert load_service("echo") is EchoService
    factory = load_service("tests.test_service:Reverser")
    assert factory().on_data(b"abc") == b"cba"


@pytest.mark.parametrize(("spec", "words"), [
    ("nope", "unknown service"),
    ("no_such_module_xyz:f", "cannot import"),
    ("tests.test_service:Missing", "no attribute"),
    ("tests.test_service:drain", "failed when called"),
    ("tests.test_service:split", "failed when called"),
    ("builtins:object", "lacks on_data, on_eof"),
])
def test_bad_service_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ServiceLoadError, match=words):
        load_service(spec)
