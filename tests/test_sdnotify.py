"""The sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from gateway.sdnotify import SystemdNotifier

WAIT = 5.0  # generous timeout for anything we wait for; never a sleep


@dataclass(frozen=True)
class Datagram:
    received_at: float  # time.monotonic() when the receiving thread got it
    text: str

    @property
    def fields(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.text.split("\n"))


class FakeSystemd:
    """Receives notification datagrams on a thread, so timestamps stay honest even while
    the test's event loop is blocked."""

    def __init__(self, address: str | bytes) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._sock.settimeout(0.05)
        self._received: list[Datagram] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, daemon=True)
        self._thread.start()

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._changed:
                self._received.append(Datagram(time.monotonic(), data.decode()))
                self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Datagram]:
        """Block until at least ``count`` datagrams arrived; fail the test on timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                pytest.fail(f"expected {count} notifications in {timeout}s: {self._received!r}")
            return list(self._received)

    def received(self) -> list[Datagram]:
        with self._changed:
            return list(self._received)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self._sock.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "notify.sock")


@pytest.fixture
def systemd(socket_path: str, clean_env: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(socket_path)
    clean_env.setenv("NOTIFY_SOCKET", socket_path)
    yield fake
    fake.close()


def test_ready_sends_ready_and_status(systemd: FakeSystemd) -> None:
    assert SystemdNotifier().ready(status="3 accounts running") is True
    [message] = systemd.wait_for(1)
    assert message.fields == {"READY": "1", "STATUS": "3 accounts running"}


def test_ready_without_status_sends_only_ready(systemd: FakeSystemd) -> None:
    SystemdNotifier().ready()
    assert systemd.wait_for(1)[0].text == "READY=1"


def test_reloading_carries_current_monotonic_usec(systemd: FakeSystemd) -> None:
    before = time.monotonic_ns() // 1000
    SystemdNotifier().reloading()
    after = time.monotonic_ns() // 1000
    fields = systemd.wait_for(1)[0].fields
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    assert abs(int(fields["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < WAIT


def test_stopping_sends_stopping(systemd: FakeSystemd) -> None:
    SystemdNotifier().stopping()
    assert systemd.wait_for(1)[0].text == "STOPPING=1"


def test_status_is_kept_on_one_line(systemd: FakeSystemd) -> None:
    SystemdNotifier().status("reload failed\nREADY=1")
    assert systemd.wait_for(1)[0].text == "STATUS=reload failed READY=1"


def test_notify_joins_lines_into_one_datagram(systemd: FakeSystemd) -> None:
    assert SystemdNotifier().notify("STATUS=x", "ERRNO=0") is True
    assert systemd.wait_for(1)[0].text == "STATUS=x\nERRNO=0"


def test_explicit_socket_path_overrides_environment(
    tmp_path: Path, socket_path: str, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("NOTIFY_SOCKET", str(tmp_path / "elsewhere.sock"))
    fake = FakeSystemd(socket_path)
    try:
        SystemdNotifier(socket_path).stopping()
        assert fake.wait_for(1)[0].text == "STOPPING=1"
    finally:
        fake.close()


def test_abstract_socket_address_with_at_sign(clean_env: pytest.MonkeyPatch) -> None:
    name = f"switchboard-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(b"\0" + name.encode())
    try:
        clean_env.setenv("NOTIFY_SOCKET", f"@{name}")
        notifier = SystemdNotifier()
        assert notifier.enabled
        assert notifier.ready() is True
        assert fake.wait_for(1)[0].text == "READY=1"
    finally:
        fake.close()


def test_disabled_without_notify_socket(clean_env: pytest.MonkeyPatch) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled is False
    assert notifier.notify("READY=1") is False
    assert notifier.ready("x") is False
    assert notifier.watchdog_interval() is None


def test_unsupported_address_is_disabled(clean_env: pytest.MonkeyPatch) -> None:
    assert SystemdNotifier("vsock:2:1234").enabled is False


def test_notify_returns_false_when_nobody_listens(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "missing.sock"))
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_ping() is False


def test_watchdog_interval_is_half_of_watchdog_usec(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "30000000")
    assert SystemdNotifier().watchdog_interval() == pytest.approx(15.0)


def test_watchdog_interval_accepts_own_pid(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "200000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier().watchdog_interval() == pytest.approx(0.1)


def test_watchdog_pid_of_another_process_disables_watchdog(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "200000")
    clean_env.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert SystemdNotifier().watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "0", "-5", "soon"])
def test_invalid_watchdog_usec_disables_watchdog(
    value: str, systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", value)
    assert SystemdNotifier().watchdog_interval() is None


async def test_run_watchdog_returns_at_once_without_interval(systemd: FakeSystemd) -> None:
    with anyio.fail_after(WAIT):
        await SystemdNotifier().run_watchdog()
    assert systemd.received() == []


async def test_watchdog_pings_at_half_the_watchdog_period(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "200000")  # -> a ping every 100 ms
    async with anyio.create_task_group() as tg:
        tg.start_soon(SystemdNotifier().run_watchdog)
        pings = await anyio.to_thread.run_sync(systemd.wait_for, 6)
        tg.cancel_scope.cancel()

    assert {p.text for p in pings} == {"WATCHDOG=1"}
    gaps = [b.received_at - a.received_at for a, b in zip(pings, pings[1:])]
    # Never faster than the interval (small slack for timestamping on another thread);
    # the upper bound is loose because a loaded CI machine oversleeps.
    assert min(gaps) >= 0.08, gaps
    assert statistics.median(gaps) <= 0.3, gaps


async def test_no_watchdog_pings_while_event_loop_is_blocked(
    systemd: FakeSystemd, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHDOG_USEC", "200000")  # -> a ping every 100 ms
    async with anyio.create_task_group() as tg:
        tg.start_soon(SystemdNotifier().run_watchdog)
        await anyio.to_thread.run_sync(systemd.wait_for, 1)

        # The stimulus: a stuck event loop for ~4 intervals (a busy wait, on purpose).
        block_start = time.monotonic()
        while time.monotonic() - block_start < 0.4:
            pass
        block_end = time.monotonic()

        seen = len(systemd.received())
        await anyio.to_thread.run_sync(systemd.wait_for, seen + 1)  # pings resume afterwards
        tg.cancel_scope.cancel()

    during_block = [p for p in systemd.received() if block_start < p.received_at <= block_end]
    # At most one: a ping sent just before the block may be stamped just inside it.
    assert len(during_block) <= 1, during_block
    assert systemd.received()[-1].received_at > block_end
