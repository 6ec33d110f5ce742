"""kill -9 in the middle of a delivery run: every accepted message still goes out.

1,000 messages (some of several chunks) are stored with ``Outbox.enqueue_offline`` exactly
as ``deliver()`` stores them, the real daemon (``switchboard run``) starts sending them to a
slow loopback sink through the example provider, and is killed with SIGKILL part-way.
After a restart every part arrives. The sink counts the parts it saw more than once (by the
``delivery_id`` the example provider sends): at-least-once allows a resend only of what was
in flight at the kill, at most one part per lane.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio

from gateway.outbound import DEFAULT_MAX_IN_FLIGHT, DeliveryRequest, Outbox
from tests.fakes.http_sink import HttpSink

MESSAGES = 1000
TARGETS = 8


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        log_format = "json"
        [gateway.reload]
        mode = "off"
        [handler]
        kind = "none"
        [providers.example]
        url = "{url}"
        """))
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    switchboard = Path(sys.executable).parent / "switchboard"
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_CONFIG"}
    with log.open("ab") as out:
        return subprocess.Popen([str(switchboard), "run", "--config", str(config)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def expected_parts(state_dir: Path) -> set[str]:
    """Every ``<id>:<part>`` the outbox must deliver, read from its table."""
    with sqlite3.connect(state_dir / "switchboard.db") as conn:
        rows = conn.execute("SELECT id, body FROM outbox").fetchall()
    return {f"{id}:{n}" for id, body in rows for n in range(len(json.loads(body)["parts"]))}


def message(i: int) -> DeliveryRequest:
    # Every 10th message is long: the example provider's 2,000-character limit splits it.
    text = f"message {i} " + ("lorem ipsum dolor " * 200 if i % 10 == 0 else "")
    return DeliveryRequest("example", f"chat:{i % TARGETS}", text)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    with anyio.fail_after(timeout):
        return await anyio.to_thread.run_sync(proc.wait)


async def test_kill_9_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    sink = HttpSink(delay_s=0.02)
    url = await sink.start()
    log = tmp_path / "daemon.log"
    daemon: subprocess.Popen[bytes] | None = None
    try:
        config = write_config(tmp_path, url)
        records = await Outbox.enqueue_offline(config, [message(i) for i in range(MESSAGES)])
        assert len({r.id for r in records}) == MESSAGES
        parts = expected_parts(tmp_path / "state")
        assert len(parts) > MESSAGES  # the long messages have several parts

        daemon = start_daemon(config, log)
        await sink.wait_for(lambda s: s.unique >= 300, timeout=60)
        daemon.send_signal(signal.SIGKILL)
        assert await wait_exit(daemon) == -signal.SIGKILL
        received_before_kill = sink.unique
        assert received_before_kill < len(parts), "the kill came too late to test anything"

        daemon = start_daemon(config, log)
        await sink.wait_for(lambda s: s.unique >= len(parts), timeout=120)
        daemon.send_signal(signal.SIGTERM)
        assert await wait_exit(daemon) == 0
        daemon = None
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        await sink.stop()

    print(f"\ncrash test: {len(parts)} parts of {MESSAGES} messages; {received_before_kill} received before "
          f"kill -9; {sink.duplicates} duplicate(s) after the restart")
    assert set(sink.delivery_ids) == parts
    # Only the parts in flight at the kill are sent again: at most one per lane, and there
    # are no more lanes than targets.
    assert sink.duplicates <= min(DEFAULT_MAX_IN_FLIGHT, TARGETS)
    with sqlite3.connect(tmp_path / "state" / "switchboard.db") as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    assert states == {"delivered": MESSAGES}, log.read_text()[-3000:]
