"""Pairing: the store's limits, and `switchboard pairing` against a running daemon."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from gateway.inbound.pairing import CODE_ALPHABET, PairingStore
from gateway.plugin import AccountKey
from gateway.store import Database
from tests.daemon import Daemon, run_cli
from tests.test_inbound_e2e import next_frame
from tests.test_inbound_fakes import message
from tests.test_webchat import TOKEN, free_port

KEY = AccountKey("chat", "default")


@pytest.fixture
def store(tmp_path: Path) -> PairingStore:
    return PairingStore(Database(tmp_path / "db.sqlite"))


def test_codes_are_eight_unambiguous_characters(store: PairingStore):
    codes = []
    for n in range(3):
        offer = store.offer(message(sender=f"s{n}"), "room:x", now=0)
        assert not isinstance(offer, str)
        codes.append(offer.code)
    assert all(len(c) == 8 and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set("01OI") & set(CODE_ALPHABET)


def test_one_code_per_sender_per_hour(store: PairingStore):
    first = store.offer(message(sender="s"), "room:s", now=0)
    assert store.offer(message(sender="s"), "room:s", now=3599) == "rate_limited"
    again = store.offer(message(sender="s"), "room:s", now=3600)
    assert not isinstance(first, str) and not isinstance(again, str) and again.code != first.code


def test_at_most_three_pending_requests_per_account(store: PairingStore):
    for n in range(3):
        assert not isinstance(store.offer(message(sender=f"s{n}"), "t", now=0), str)
    assert store.offer(message(sender="s4"), "t", now=0) == "full"
    assert not isinstance(store.offer(message(sender="s5", account="other"), "t", now=0), str)


def test_expired_codes_cannot_be_approved(store: PairingStore):
    offer = store.offer(message(sender="s"), "t", now=0)
    assert not isinstance(offer, str)
    assert store.approve("chat", offer.code, now=3600) is None
    assert not store.is_approved(KEY, "s")


def test_approval_is_per_account(store: PairingStore):
    offer = store.offer(message(sender="s"), "t", now=0)
    assert not isinstance(offer, str)
    assert store.approve("chat", offer.code, now=1) is not None
    assert store.is_approved(KEY, "s") and not store.is_approved(AccountKey("chat", "other"), "s")


# --- the CLI against the daemon ---------------------------------------------------------------------


def switchboard(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(config, *args)


def pairing_config(tmp_path: Path, port: int) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    path = tmp_path / "switchboard.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 's'}"
        [gateway.control]
        listen = "127.0.0.1:{port}"
        token_file = "{token}"
        [handler]
        kind = "echo"
        [providers.webchat]
        dm_policy = "pairing"
        """))
    return path


async def test_cli_approves_a_stranger_whose_next_message_goes_through(tmp_path: Path):
    port = free_port()
    config = pairing_config(tmp_path, port)
    daemon = Daemon(config)
    url = f"ws://127.0.0.1:{port}/chat/ws?chat=stranger-tab-1&token={TOKEN}"
    try:
        await anyio.to_thread.run_sync(daemon.wait_event, "webchat.ready")
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await next_frame(ws, "ready")
            for n in range(3):
                await ws.send_json({"type": "message", "id": f"p{n}", "text": f"hello {n}"})
            # The code may arrive before or after the acks: it is sent while the first is accepted.
            frames = [await next_frame(ws, "") for _ in range(4)]
            assert [f["queued"] for f in frames if f["type"] == "ack"] == [False] * 3
            [notice] = [f for f in frames if f["type"] == "message"]
            listed = await anyio.to_thread.run_sync(switchboard, config, "pairing", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            [request] = json.loads(listed.stdout)["requests"]
            assert request["code"] in notice["text"] and request["sender"]["id"] == "stranger-tab-1"

            approved = await anyio.to_thread.run_sync(switchboard, config, "pairing", "approve", "webchat",
                                                      request["code"].lower())
            assert approved.returncode == 0, approved.stderr
            assert "approved" in approved.stdout and "webchat/default" in approved.stdout
            assert "approved" in (await next_frame(ws, "message"))["text"]

            await ws.send_json({"type": "message", "id": "p9", "text": "am I in?"})
            assert (await next_frame(ws, "ack"))["queued"] is True
            echo: dict[str, Any] = await next_frame(ws, "message")
            assert echo["text"] == "am I in?"
        table = await anyio.to_thread.run_sync(switchboard, config, "pairing", "list")
        assert "No pending pairing requests." in table.stdout
        unknown = await anyio.to_thread.run_sync(switchboard, config, "pairing", "deny", "webchat", "ZZZZZZZZ")
        assert unknown.returncode != 0 and "no pending pairing code ZZZZZZZZ" in unknown.stderr
    finally:
        daemon.stop()
    stopped = switchboard(config, "pairing", "list")
    assert stopped.returncode != 0 and len(stopped.stderr.strip().splitlines()) == 1
    assert "Traceback" not in stopped.stderr
