"""Fakes shared by the inbound tests: a chat provider, a recording outbox, a python handler.

No tests live here. The recording outbox keeps the outbox's promise that matters to the
pipeline (a repeated idempotency key is accepted once); ``DirectOutbox`` also sends through
the provider's real outbound adapter, for tests that want replies at the provider.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.inbound import InboundPipeline
from gateway.plugin import (
    AccountContext,
    AccountKey,
    BaseOutbound,
    Capabilities,
    Chat,
    ChatType,
    InboundMessage,
    MediaRef,
    PluginMeta,
    ProviderPlugin,
    SendOptions,
    SendResult,
    Sender,
    Target,
)
from gateway.registry import Registry
from tests.support import write_config


class Waitable:
    """A list you can wait on: ``await items.wait_for(n)`` returns once it holds ``n`` items."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    def append(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        with anyio.fail_after(timeout):
            while len(self.items) < count:
                await self._changed.wait()
        return list(self.items)

    def __len__(self) -> int:
        return len(self.items)


# --- a chat provider ----------------------------------------------------------------------------


class ChatGateway:
    async def run_account(self, ctx: AccountContext) -> None:
        ctx.started()
        await anyio.sleep_forever()


class ChatOutbound(BaseOutbound):
    """Targets are ``room:<chat id>``, so a test can see that ``reply_target`` was used."""

    chunker = "plain"

    def __init__(self) -> None:
        self.sent = Waitable()
        self.ids = itertools.count(1)

    def resolve_target(self, raw: str, account: Any) -> Target:
        kind, _, ident = raw.partition(":")
        assert kind == "room" and ident, raw
        return Target("room", ident)

    def reply_target(self, message: InboundMessage) -> str:
        return f"room:{message.chat.id}"

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        self.sent.append((target.id, text, opts))
        return SendResult(str(next(self.ids)), chat_id=target.id)


def chat_plugin() -> ProviderPlugin:
    return ProviderPlugin(id="chat", meta=PluginMeta(label="Chat"), gateway=ChatGateway(),
                          capabilities=Capabilities(chat_types=frozenset({ChatType.DIRECT, ChatType.GROUP})),
                          outbound=ChatOutbound())


# --- outboxes ----------------------------------------------------------------------------------


class RecordingOutbox:
    """Records delivery requests; a repeated idempotency key is accepted once."""

    def __init__(self) -> None:
        self.requests = Waitable()
        self._keys: dict[str, int] = {}

    async def deliver(self, request: Any, *, wait: bool = False) -> Any:
        key = request.idempotency_key
        if key is not None and key in self._keys:
            return self._keys[key]
        self.requests.append(request)
        if key is not None:
            self._keys[key] = len(self.requests)
        return len(self.requests)

    def texts(self) -> list[str]:
        return [r.text for r in self.requests.items]


class DirectOutbox(RecordingOutbox):
    """Also sends each new request through the provider's outbound adapter (no retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.gateway: Gateway | None = None

    async def deliver(self, request: Any, *, wait: bool = False) -> Any:
        before = len(self.requests)
        result = await super().deliver(request, wait=wait)
        if len(self.requests) > before:
            assert self.gateway is not None
            plugin = self.gateway.registry.get_plugin(request.provider)
            key = AccountKey(request.provider, request.account or "default")
            with anyio.fail_after(10):
                ctx = await self.gateway.supervisor.wait_running(key)
            assert plugin.outbound is not None
            target = plugin.outbound.resolve_target(request.to, ctx.account)
            await plugin.outbound.send_text(ctx, target, request.text,
                                            SendOptions(reply_to=request.reply_to, thread=request.thread))
        return result


# --- a python handler the tests steer ------------------------------------------------------------


class Recorder:
    """The python handler ``tests.test_inbound_fakes:handler`` records calls here."""

    def __init__(self) -> None:
        self.calls = Waitable()
        self.behaviour: Callable[[dict[str, Any]], Awaitable[Any]] | None = None

    async def __call__(self, envelope: dict[str, Any]) -> Any:
        self.calls.append(envelope)
        if self.behaviour is not None:
            return await self.behaviour(envelope)
        return None

    def texts(self) -> list[str]:
        return [c["message"]["text"] for c in self.calls.items]


RECORDER = Recorder()


async def handler(envelope: dict[str, Any]) -> Any:
    return await RECORDER(envelope)


@pytest.fixture
def recorder() -> Recorder:
    global RECORDER
    RECORDER = Recorder()
    return RECORDER


# --- building gateways ---------------------------------------------------------------------------

PYTHON_HANDLER = """
[handler]
kind = "python"
function = "tests.test_inbound_fakes:handler"
retry_initial_ms = 1
retry_max_ms = 20
"""


def config_file(tmp_path: Path, providers: str, handler: str = PYTHON_HANDLER) -> Path:
    return write_config(tmp_path, handler + "\n" + providers)


@asynccontextmanager
async def pipeline_gateway(path: Path, outbox: RecordingOutbox | None = None,
                           plugins: list[ProviderPlugin] | None = None) -> AsyncIterator[tuple[Gateway, InboundPipeline]]:
    """A running gateway with the inbound pipeline (replies into ``outbox``) and the chat provider."""
    registry = Registry(plugins if plugins is not None else [chat_plugin()])
    outbox = outbox if outbox is not None else RecordingOutbox()
    gateway = Gateway(load_config(path, registry), registry,
                      services=[lambda gw: InboundPipeline(gw, outbox=outbox)])
    if isinstance(outbox, DirectOutbox):
        outbox.gateway = gateway
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            for key in gateway.config.accounts:
                with anyio.fail_after(5):
                    await gateway.supervisor.wait_running(key)
            yield gateway, gateway.service(InboundPipeline)
        finally:
            gateway.request_stop()


_ids = itertools.count(1)


def message(text: str = "hello", *, sender: str = "alice-id", username: str | None = "alice", chat: str | None = None,
            chat_type: ChatType = ChatType.DIRECT, mentioned: bool = False, id: str | None = None,
            provider: str = "chat", account: str = "default", thread: str | None = None,
            media: tuple[MediaRef, ...] = (), type: str = "message", reply_to: str | None = None) -> InboundMessage:
    return InboundMessage(provider=provider, account=account, id=id or f"m{next(_ids)}",
                          chat=Chat(chat or sender, chat_type), sender=Sender(sender, sender.title(), username),
                          text=text, media=media, thread=thread, mentioned=mentioned, reply_to=reply_to,
                          timestamp=datetime(2026, 11, 25, 10, 0, tzinfo=UTC), type=type)  # type: ignore[arg-type]
