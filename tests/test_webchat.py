"""The webchat provider behind the real control server, in process: page, websocket, replies."""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.control import ControlServer
from gateway.errors import TargetError
from gateway.inbound import InboundPipeline
from gateway.plugin import AccountKey, AccountState
from gateway.registry import Registry
from gateway.testing import wait_for_status
from providers.webchat import plugin as webchat
from tests.test_inbound_fakes import DirectOutbox, Recorder, recorder  # noqa: F401 - fixture

KEY = AccountKey("webchat", "default")
TOKEN = "test-token-0123456789"
CHAT_A, CHAT_B = "tab-aaaaaaaa", "tab-bbbbbbbb"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webchat_config(tmp_path: Path, *, handler: str = '[handler]\nkind = "echo"\n', extra: str = "",
                   listen: bool = True) -> Path:
    port = free_port()
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    path = tmp_path / "switchboard.toml"
    control = f'listen = "127.0.0.1:{port}"\ntoken_file = "{tmp_path / "token"}"\n' if listen else ""
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / "s"}"
        [gateway.restart]
        initial_ms = 50
        max_ms = 400
        [gateway.outbox]
        flush_timeout_s = 0.5
        [gateway.control]
        """) + control + handler + '[providers.webchat]\ndm_policy = "open"\n' + extra)
    return path


@asynccontextmanager
async def webchat_gateway(path: Path) -> AsyncIterator[tuple[Gateway, str]]:
    """Pipeline (replies sent straight to the provider) + control server + webchat; yields the base URL."""
    registry = Registry([webchat])
    outbox = DirectOutbox()
    gateway = Gateway(load_config(path, registry), registry,
                      services=[lambda gw: InboundPipeline(gw, outbox=outbox), ControlServer])
    outbox.gateway = gateway
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            server = gateway.service(ControlServer)
            host, port = server.tcp_address
            yield gateway, f"http://{host}:{port}"
        finally:
            gateway.request_stop()


async def running(gateway: Gateway) -> None:
    await wait_for_status(gateway.status, lambda s: s.state(KEY) == AccountState.RUNNING)


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out = []
    with anyio.fail_after(timeout):
        while len(out) < count:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            out.append(json.loads(msg.data))
    return out


def ws_url(base: str, chat: str, token: str | None = TOKEN) -> str:
    url = base.replace("http://", "ws://") + f"/chat/ws?chat={chat}"
    return url + (f"&token={token}" if token else "")


async def test_page_and_its_files_are_served_at_chat(tmp_path: Path):
    async with webchat_gateway(webchat_config(tmp_path, extra='title = "Desk"\n')) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/chat") as resp:
                page = await resp.text()
                assert resp.status == 200 and resp.content_type == "text/html"
            async with http.get(base + "/chat/static/chat.js") as resp:
                assert resp.status == 200 and "sessionStorage" in await resp.text()
            async with http.get(base + "/chat/static/../../etc/passwd") as resp:
                assert resp.status == 404
    assert "<title>Desk · web chat</title>" in page and 'data-base="/chat"' in page


async def test_typed_message_reaches_the_handler_and_the_reply_comes_back(tmp_path: Path):
    async with webchat_gateway(webchat_config(tmp_path)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(base, CHAT_A)) as ws:
            [ready] = await frames(ws, 1)
            assert ready == {"type": "ready", "chat": CHAT_A, "title": "Switchboard"}
            await ws.send_json({"type": "message", "id": "c1", "text": "hello there"})
            ack, reply = await frames(ws, 2)
    assert ack == {"type": "ack", "id": "c1", "queued": True}
    assert reply["type"] == "message" and reply["text"] == "hello there" and reply["reply_to"] == "c1"


async def test_each_tab_is_its_own_chat(tmp_path: Path, recorder: Recorder):
    handler = '[handler]\nkind = "python"\nfunction = "tests.test_inbound_fakes:handler"\n'

    async def reply(envelope: dict) -> str:
        return f"to {envelope['message']['chat']['id']}"

    recorder.behaviour = reply
    async with webchat_gateway(webchat_config(tmp_path, handler=handler)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(base, CHAT_A)) as a, \
                http.ws_connect(ws_url(base, CHAT_B)) as b:
            await frames(a, 1)
            await frames(b, 1)
            await a.send_json({"type": "message", "id": "x1", "text": "from a"})
            _, reply_a = await frames(a, 2)
            await b.send_json({"type": "message", "id": "x1", "text": "from b"})
            _, reply_b = await frames(b, 2)
    assert reply_a["text"] == f"to {CHAT_A}" and reply_b["text"] == f"to {CHAT_B}"
    [first, second] = recorder.calls.items
    assert first["message"]["sender"]["id"] == CHAT_A and first["message"]["chat"]["type"] == "direct"
    assert second["message"]["id"] == f"{CHAT_B}:x1"


async def test_a_resent_message_reaches_the_handler_once(tmp_path: Path, recorder: Recorder):
    handler = '[handler]\nkind = "python"\nfunction = "tests.test_inbound_fakes:handler"\n'
    async with webchat_gateway(webchat_config(tmp_path, handler=handler)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(base, CHAT_A)) as ws:
            await frames(ws, 1)
            await ws.send_json({"type": "message", "id": "same", "text": "once"})
            await ws.send_json({"type": "message", "id": "same", "text": "once"})
            acks = await frames(ws, 2)
            await recorder.calls.wait_for(1)
    assert [a["queued"] for a in acks] == [True, False] and len(recorder.calls) == 1


async def test_websocket_without_the_token_is_asked_for_it(tmp_path: Path):
    async with webchat_gateway(webchat_config(tmp_path)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http:
            for token in (None, "wrong-token"):
                async with http.ws_connect(ws_url(base, CHAT_A, token)) as ws:
                    assert await frames(ws, 1) == [{"type": "auth_required"}]
                    closing = await ws.receive()
                    assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


async def test_invalid_frames_get_an_error_not_a_disconnect(tmp_path: Path):
    async with webchat_gateway(webchat_config(tmp_path)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(base, CHAT_A)) as ws:
            await frames(ws, 1)
            await ws.send_str("not json")
            await ws.send_json({"type": "message", "id": "ok", "text": ""})
            errors = await frames(ws, 2)
            await ws.send_json({"type": "message", "id": "ok", "text": "still here"})
            ack, _reply = await frames(ws, 2)
    assert [e["type"] for e in errors] == ["error", "error"] and ack["queued"] is True


async def test_stopping_the_account_unmounts_the_page_and_closes_tabs(tmp_path: Path):
    async with webchat_gateway(webchat_config(tmp_path)) as (gw, base):
        await running(gw)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(base, CHAT_A)) as ws:
            await frames(ws, 1)
            assert gw.status.get(KEY)["open_chats"] == 1
            assert await gw.supervisor.stop_account(KEY)
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            async with http.get(base + "/chat") as resp:
                assert resp.status == 404


async def test_webchat_without_a_tcp_listener_fails_with_a_config_issue(tmp_path: Path):
    registry = Registry([webchat])
    config = load_config(webchat_config(tmp_path, listen=False), registry)
    gateway = Gateway(config, registry, services=[InboundPipeline])
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        await wait_for_status(gateway.status, lambda s: s.state(KEY) == AccountState.FAILED)
        [issue] = gateway.status.account_issues(KEY)
        gateway.request_stop()
    assert issue.kind == "config" and "gateway.control.listen" in (issue.fix or "")


def test_targets_are_tab_chat_ids():
    account = webchat.config.model()
    assert str(webchat.outbound.resolve_target("chat:tab-aaaaaaaa", account)) == "chat:tab-aaaaaaaa"
    assert str(webchat.outbound.resolve_target("webchat:tab-aaaaaaaa", account)) == "chat:tab-aaaaaaaa"
    with pytest.raises(TargetError, match="Webchat target must be chat:<id>"):
        webchat.outbound.resolve_target("x", account)
