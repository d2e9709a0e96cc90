"""The bench's view of a process's sockets (/proc): listening and accepted connections."""

from __future__ import annotations

import os
import socket
import threading
import time

from bench.procs import (
    connections_on_port,
    context_switches,
    listening_on_port,
    switches_since,
    tree_switches,
)


def test_a_listening_socket_is_seen_until_it_closes() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        assert listening_on_port(os.getpid(), port)
        assert connections_on_port(os.getpid(), port) == 0
    finally:
        server.close()
    assert not listening_on_port(os.getpid(), port)


def test_accepted_connections_count_and_do_not_look_like_listening() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [server.accept()[0] for _ in clients]
    server.close()
    try:
        # The accepted sockets have the port as their local port, but none listens.
        assert connections_on_port(os.getpid(), port) == 3
        assert not listening_on_port(os.getpid(), port)
    finally:
        for s in clients + accepted:
            s.close()


def test_a_process_that_is_gone_holds_nothing() -> None:
    gone = 2**22 + 7  # above the default pid_max: no such process
    assert not listening_on_port(gone, 80)
    assert connections_on_port(gone, 80) == 0


def test_context_switches_count_every_thread_and_grow_when_one_waits() -> None:
    before = context_switches(os.getpid())
    done = threading.Event()
    waiter = threading.Thread(target=lambda: done.wait(5))
    waiter.start()
    time.sleep(0.01)  # the measured behaviour: a thread that waits is switched out
    done.set()
    waiter.join()
    assert context_switches(os.getpid()) > before
    assert tree_switches(os.getpid())[os.getpid()] >= before
    assert switches_since({1: 5}, {1: 7, 2: 3}) == 5  # a process new since counts from 0
    assert context_switches(2**22 + 7) == 0
