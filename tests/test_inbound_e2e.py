"""The daemon as a subprocess: a message stored before ``kill -9`` is handled after the restart."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from tests.daemon import Daemon, run_cli
from tests.test_webchat import TOKEN, free_port

CHAT = "tab-e2e-0001"


def daemon_config(tmp_path: Path, port: int, command: list[str]) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    path = tmp_path / "switchboard.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 's'}"
        [gateway.reload]
        mode = "off"
        [gateway.control]
        listen = "127.0.0.1:{port}"
        token_file = "{token}"
        [handler]
        kind = "command"
        command = {json.dumps(command)}
        timeout_s = 60
        [providers.webchat]
        dm_policy = "open"
        """))
    return path


async def wait_event(daemon: Daemon, name: str) -> dict[str, Any]:
    return await anyio.to_thread.run_sync(daemon.wait_event, name)


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    """The next frame of type ``kind`` (others are skipped); ``kind=""`` takes any frame."""
    with anyio.fail_after(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if not kind or frame["type"] == kind:
                return frame


async def test_kill_9_between_persisting_and_handling_is_handled_after_restart(tmp_path: Path):
    port = free_port()
    started, release = tmp_path / "handler-started", tmp_path / "release"
    blocking = tmp_path / "blocking.py"
    blocking.write_text(textwrap.dedent(f"""\
        import pathlib, sys, time
        sys.stdin.read()
        pathlib.Path({str(started)!r}).touch()
        while not pathlib.Path({str(release)!r}).exists():  # the test releases the orphan at the end
            time.sleep(0.05)
        """))
    replying = tmp_path / "replying.py"
    replying.write_text("import json, sys\nprint('handled after restart: ' + json.load(sys.stdin)['message']['text'])\n")
    url = f"ws://127.0.0.1:{port}/chat/ws?chat={CHAT}&token={TOKEN}"

    first = Daemon(daemon_config(tmp_path, port, [sys.executable, str(blocking)]))
    try:
        await wait_event(first, "webchat.ready")
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await next_frame(ws, "ready")
            await ws.send_json({"type": "message", "id": "k1", "text": "survive this"})
            ack = await next_frame(ws, "ack")
            assert ack["queued"] is True  # stored: the provider may acknowledge now
            with anyio.fail_after(20):
                while not started.exists():  # the handler is running: kill the daemon mid-call
                    await anyio.sleep(0.02)
            first.kill()
    finally:
        first.kill()

    second = Daemon(daemon_config(tmp_path, port, [sys.executable, str(replying)]))
    try:
        await wait_event(second, "webchat.ready")
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await next_frame(ws, "ready")
            reply = await next_frame(ws, "message")
        assert reply["text"] == "handled after restart: survive this"
        assert reply["reply_to"] == "k1"
        resumed = await wait_event(second, "inbound.resumed")
        assert resumed["pending"] == 1
    finally:
        second.stop()
        release.touch()


def _cli(config: Path, *args: str) -> str:
    result = run_cli(config, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_message_the_handler_keeps_refusing_is_parked_and_the_cli_retries_or_drops_it(tmp_path: Path):
    port = free_port()
    failing = tmp_path / "failing.py"
    failing.write_text("import sys\nsys.stdin.read()\nprint('handler is down', file=sys.stderr)\nsys.exit(3)\n")
    path = daemon_config(tmp_path, port, [sys.executable, str(failing)])
    path.write_text(path.read_text().replace("timeout_s = 60", "timeout_s = 60\nmax_attempts = 1"))
    daemon = Daemon(path)
    try:
        await wait_event(daemon, "webchat.ready")
        url = f"ws://127.0.0.1:{port}/chat/ws?chat={CHAT}&token={TOKEN}"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await next_frame(ws, "ready")
            await ws.send_json({"type": "message", "id": "p1", "text": "nobody home"})
            await next_frame(ws, "ack")
        await wait_event(daemon, "inbound.parked")
        listed = json.loads(await anyio.to_thread.run_sync(_cli, path, "inbox", "list", "--json"))
        (entry,) = listed["messages"]
        assert entry["state"] == "failed" and entry["envelope"]["message"]["text"] == "nobody home"
        assert "3" in entry["last_error"]
        out = await anyio.to_thread.run_sync(_cli, path, "inbox", "drop", str(entry["id"]))
        assert f"inbox message {entry['id']} dropped" in out
        listed = json.loads(await anyio.to_thread.run_sync(_cli, path, "inbox", "list", "--json"))
        assert listed["messages"] == []
    finally:
        assert daemon.stop() == 0
