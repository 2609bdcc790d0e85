"""After fork() the child restarts its own sync thread (gunicorn/uwsgi pre-fork, --preload, Celery)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import pytest
from forge_stub import StubForge

import anvil_client

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def test_forked_children_get_updates_through_their_own_sync_thread(
    stub: StubForge, make_client: Callable[..., anvil_client.Client]
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert client.prompt("welcome.message", name="P") == "Hello P (v1)"  # parent started: thread + stream
    assert stub.wait_for(lambda: stub.open_streams() == 1 and client._sync._stream is not None)
    parent_stream_fd = client._sync._stream._sock.fileno()

    children = []
    for _ in range(2):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report what it serves, then wait for v2
            os.close(read_fd)
            code = 1
            try:
                try:
                    os.fstat(parent_stream_fd)
                    inherited = "kept"
                except OSError:
                    inherited = "closed"
                first = client.prompt("welcome.message", name="C")  # restarts sync in this process
                threads = [t.name for t in threading.enumerate()]
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and client.prompt("welcome.message", name="C") != "Hello C (v2)":
                    time.sleep(0.01)
                final = client.prompt("welcome.message", name="C")
                os.write(write_fd, f"{first}|{final}|{threads.count('anvil.sync')}|{inherited}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))

    assert stub.wait_for(lambda: stub.open_streams() == 3, 20)  # parent + one stream per child
    stub.publish("core", 2)
    reports = []
    for pid, read_fd in children:
        _, status = os.waitpid(pid, 0)
        reports.append(os.read(read_fd, 1000).decode())
        os.close(read_fd)
        assert status == 0
    assert reports == ["Hello C (v1)|Hello C (v2)|1|closed"] * 2
    assert client.prompt("welcome.message", name="P") == "Hello P (v2)"
    sys.stdout.flush()


def test_a_child_forked_while_a_thread_records_usage_can_record_its_own(
    stub: StubForge, make_client: Callable[..., anvil_client.Client]
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert client.prompt("welcome.message", name="P") == "Hello P (v1)"
    client._usage_lock.acquire()  # as a parent thread recording a new variable name at the moment of the fork
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 1
            try:
                done: list[str] = []
                worker = threading.Thread(
                    target=lambda: done.append(client.prompt("welcome.message", name="C", new_name=1)), daemon=True
                )
                worker.start()
                worker.join(10)
                os.write(write_fd, (done[0] if done else "stuck").encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        report = os.read(read_fd, 1000).decode()
        os.close(read_fd)
    finally:
        client._usage_lock.release()
    assert status == 0
    assert report == "Hello C (v1)"
