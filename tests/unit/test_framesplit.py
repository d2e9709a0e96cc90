"""`provider.framesplit`: a client's bytes cut into whole frames, fast or raw, in order.

Frames are built with websockets' own client-side framing (masked), so what the splitter
reads is what a real client sends.
"""

from __future__ import annotations

import os

import pytest
from websockets.frames import Frame, Opcode

from provider.framesplit import BINARY, FAST_LIMIT, RAW, TEXT, FrameSplitter, unmask_py
from provider.wsadapter import unmask


def client_frame(opcode: Opcode, data: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """One frame as a client sends it (masked); `rsv1`: with the compression bit set."""
    raw = Frame(opcode, data, fin=fin).serialize(mask=True, extensions=None)
    return bytes((raw[0] | 0x40,)) + raw[1:] if rsv1 else raw


def server_frame(opcode: Opcode, data: bytes) -> bytes:
    """One frame as a server sends it (unmasked): a client must not."""
    return Frame(opcode, data).serialize(mask=False, extensions=None)


def test_whole_text_and_binary_messages_come_out_unmasked() -> None:
    splitter = FrameSplitter(None)
    data = client_frame(Opcode.TEXT, b'{"a":1}') + client_frame(Opcode.BINARY, b"\x00\x01")
    assert splitter.feed(data, True) == [(TEXT, b'{"a":1}'), (BINARY, b"\x00\x01")]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_every_length_encoding_is_read(size: int) -> None:
    payload = os.urandom(size)
    assert FrameSplitter(None).feed(client_frame(Opcode.BINARY, payload), True) == [
        (BINARY, payload)
    ]


def test_a_frame_cut_anywhere_comes_out_once_it_is_whole() -> None:
    frames = [client_frame(Opcode.TEXT, b"x" * n) for n in (5, 200, 70_000)]
    stream = b"".join(frames)
    splitter = FrameSplitter(None)
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(stream), 7):  # 7-byte pieces cut headers and payloads alike
        got += splitter.feed(stream[i : i + 7], True)
    assert got == [(TEXT, b"x" * 5), (TEXT, b"x" * 200), (TEXT, b"x" * 70_000)]


def test_control_frames_and_bad_frames_go_raw_to_the_library() -> None:
    ping = client_frame(Opcode.PING, b"p")
    close = client_frame(Opcode.CLOSE, b"\x03\xe8")
    unmasked = server_frame(Opcode.TEXT, b"hi")
    compressed = client_frame(Opcode.TEXT, b"zz", rsv1=True)
    splitter = FrameSplitter(None)
    out = splitter.feed(ping + unmasked + compressed + close, True)
    assert out == [(RAW, ping), (RAW, unmasked), (RAW, compressed), (RAW, close)]


def test_a_fragmented_message_and_what_follows_it_go_raw_until_the_reader_took_it() -> None:
    first = client_frame(Opcode.TEXT, b"he", fin=False)
    ping = client_frame(Opcode.PING, b"")
    last = client_frame(Opcode.CONT, b"llo")
    after = client_frame(Opcode.TEXT, b"next")
    splitter = FrameSplitter(None)
    # While the fragmented message is in the library, nothing may overtake it.
    assert splitter.feed(first + ping, True) == [(RAW, first), (RAW, ping)]
    assert splitter.in_fragment
    assert splitter.feed(last + after, True) == [(RAW, last), (RAW, after)]
    assert (splitter.to_library, splitter.in_fragment) == (2, False)
    splitter.done = 1  # the reader took "hello": "next" is still in the library
    assert splitter.feed(client_frame(Opcode.TEXT, b"more"), True)[0][0] == RAW
    splitter.done = 3  # the reader took "next" and "more": fast again
    assert splitter.feed(client_frame(Opcode.TEXT, b"now"), True) == [(TEXT, b"now")]


def test_nothing_is_fast_when_the_caller_says_so_but_messages_are_counted() -> None:
    frame = client_frame(Opcode.TEXT, b"early")
    splitter = FrameSplitter(None)
    assert splitter.feed(frame + frame, False) == [(RAW, frame), (RAW, frame)]
    assert splitter.to_library == 2
    assert splitter.feed(frame, True) == [(RAW, frame)]  # the two are not read yet


def test_a_message_over_the_limit_streams_raw_and_splitting_goes_on_after_it() -> None:
    big = client_frame(Opcode.BINARY, b"b" * 1000)
    small = client_frame(Opcode.TEXT, b"s")
    splitter = FrameSplitter(100)
    stream = small + big + small
    raw = b""
    fast: list[tuple[int, bytes]] = []
    for i in range(0, len(stream), 64):
        for kind, data in splitter.feed(stream[i : i + 64], True):
            if kind == RAW:
                raw += data
            else:
                fast.append((kind, data))
        splitter.done = splitter.to_library  # the reader keeps up
    assert raw == big  # every byte of it, in order, for the library to refuse (1009)
    assert fast == [(TEXT, b"s"), (TEXT, b"s")]


def test_a_frame_bigger_than_the_fast_limit_is_not_collected() -> None:
    header = client_frame(Opcode.BINARY, b"\x00" * (FAST_LIMIT + 1))[:14]
    splitter = FrameSplitter(None)
    assert splitter.feed(header, True) == [(RAW, header)]  # passed on before its payload came


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 64, 1001])
def test_the_pure_python_unmask_matches_the_libraries(size: int) -> None:
    payload, mask = os.urandom(size), os.urandom(4)
    assert unmask_py(payload, mask) == unmask(payload, mask)
    assert unmask_py(unmask_py(payload, mask), mask) == payload
