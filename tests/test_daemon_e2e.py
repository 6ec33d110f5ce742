"""The daemon as a subprocess: readiness, graceful SIGTERM, SIGHUP reload, forced exit."""

from __future__ import annotations

import signal
import textwrap
import time

import pytest

from tests.daemon import Daemon, NotifySocket


def example_config(tmp_path, extra: str = "") -> object:  # noqa: ANN001
    path = tmp_path / "switchboard.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        [gateway.reload]
        debounce_ms = 60000   # only SIGHUP reloads in these tests
        [handler]
        kind = "none"
        [providers.example.accounts.one]
        greeting = "hi"
        [providers.example.accounts.two]
        """) + textwrap.dedent(extra))
    return path


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_sigterm_stops_gracefully_with_exit_code_zero_and_stopping_on_notify_socket(tmp_path, notify):
    daemon = Daemon(example_config(tmp_path), env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        ready = notify.wait_for("READY=1", timeout=20)
        assert any(line.startswith("STATUS=") for line in ready.splitlines())
        daemon.wait_event("gateway.started")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        notify.wait_for("STOPPING=1", timeout=1)
        names = [e.get("event") for e in daemon.events] + [e.get("event") for e in daemon.unread_events()]
        assert "gateway.stopped" in names
    finally:
        daemon.kill()


def test_sighup_reloads_the_config_file(tmp_path, notify):
    path = example_config(tmp_path)
    daemon = Daemon(path, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1", timeout=20)
        path.write_text(path.read_text() + "\n[providers.example.accounts.three]\n")
        daemon.signal(signal.SIGHUP)
        done = daemon.wait_event("reload.done")
        assert done["trigger"] == "sighup" and done["ok"] is True
        assert done["actions"] == ["started: example/three"]
        reloading = notify.wait_for("RELOADING=1", timeout=5)
        usec = int(next(line for line in reloading.splitlines() if line.startswith("MONOTONIC_USEC="))[15:])
        assert abs(usec / 1e6 - time.monotonic()) < 60
    finally:
        assert daemon.stop() == 0


def test_a_second_signal_forces_exit(tmp_path):
    path = example_config(tmp_path, """
        [providers.example.accounts.slow]
        behaviour = "ok"
        """)
    daemon = Daemon(path)
    try:
        daemon.wait_event("gateway.started")
        daemon.signal(signal.SIGINT)
        daemon.signal(signal.SIGINT)
        code = daemon.wait(timeout=20)
        assert code in (0, 130)
    finally:
        daemon.kill()


def test_invalid_config_at_startup_exits_non_zero_with_every_problem(tmp_path):
    path = example_config(tmp_path, """
        [providers.example.accounts.bad]
        greting = "typo"
        """)
    daemon = Daemon(path)
    code = daemon.wait(timeout=30)
    daemon.join_output()
    assert code == 78
    assert "providers.example.accounts.bad.greting: unknown key" in daemon.output()
    assert "Traceback" not in daemon.output()




def test_the_daemon_pings_the_watchdog_from_its_event_loop(tmp_path, notify):
    # WATCHDOG_USEC=400000 -> a ping every 200 ms.
    daemon = Daemon(example_config(tmp_path), env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    try:
        notify.wait_for("READY=1", timeout=20)
        stamps = []
        for _ in range(3):
            notify.wait_for("WATCHDOG=1", timeout=5)
            stamps.append(time.monotonic())
            notify.messages.clear()
        assert all(0.05 < b - a < 1.0 for a, b in zip(stamps, stamps[1:], strict=False))
    finally:
        assert daemon.stop() == 0
