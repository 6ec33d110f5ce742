"""A scriptable fake provider and an in-process gateway for the outbound tests (no tests here).

``FakeOutbound`` records every send with its options and raises the errors a test queued
for a target, in order. ``outbox_gateway`` runs a real :class:`Gateway` with only the
:class:`Outbox` service, in a task group, against a tmp state directory.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.errors import TargetError
from gateway.outbound import Outbox
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    AccountKey,
    BaseOutbound,
    Capabilities,
    ChatType,
    MediaKind,
    MediaPayload,
    PluginMeta,
    Poll,
    PollSupport,
    ProviderPlugin,
    SendOptions,
    SendResult,
    Target,
)
from gateway.registry import Registry


@dataclass
class Sent:
    kind: str  # text | media | poll
    target: str
    text: str | None
    opts: SendOptions
    media: MediaPayload | None = None
    poll: Poll | None = None
    at: float = field(default_factory=anyio.current_time)


class FakeGateway:
    """Accounts connect at once, unless the test holds them with ``hold``."""

    def __init__(self) -> None:
        self.hold: anyio.Event | None = None

    async def run_account(self, ctx: AccountContext) -> None:
        if self.hold is not None:
            await self.hold.wait()
        ctx.started()
        await anyio.sleep_forever()


class FakeOutbound(BaseOutbound):
    text_chunk_limit = 40
    chunker = "plain"
    caption_limit = 20
    media_max_bytes = {kind: 4096 for kind in MediaKind}
    poll_max_options = 4

    def __init__(self, *, render_html: bool = False) -> None:
        self.sent: list[Sent] = []
        #: Errors to raise, per target id, one per send attempt (FIFO).
        self.errors: dict[str, deque[BaseException]] = defaultdict(deque)
        #: Optional async hook awaited before each send (slow sends, interleaving).
        self.before_send: Any = None
        self.render_html = render_html
        self._changed = anyio.Event()
        self._ids = 0

    def render(self, text: str) -> str:
        # A render that grows the text, like markdown -> Telegram HTML escaping.
        return text.replace("&", "&amp;") if self.render_html else text

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        kind, _, ident = raw.partition(":")
        if kind != "chat" or not ident:
            raise TargetError(f"Fake target must be chat:<id>, got {raw!r}")
        return Target("chat", ident)

    def fail_next(self, target_id: str, *errors: BaseException) -> None:
        self.errors[target_id].extend(errors)

    async def _record(self, sent: Sent, target: Target) -> SendResult:
        if self.before_send is not None:
            await self.before_send(sent)
        queued = self.errors.get(target.id)
        if queued:
            raise queued.popleft()
        self.sent.append(sent)
        self._ids += 1
        self._changed.set()
        self._changed = anyio.Event()
        return SendResult(str(self._ids), chat_id=target.id)

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        return await self._record(Sent("text", target.id, text, opts), target)

    async def send_media(self, ctx: AccountContext, target: Target, media: MediaPayload, caption: str | None,
                         opts: SendOptions) -> SendResult:
        return await self._record(Sent("media", target.id, caption, opts, media=media), target)

    async def wait_sent(self, count: int, timeout: float = 5.0) -> list[Sent]:
        with anyio.fail_after(timeout):
            while len(self.sent) < count:
                await self._changed.wait()
        return list(self.sent)


class NativePollOutbound(FakeOutbound):
    async def send_poll(self, ctx: AccountContext, target: Target, poll: Poll, opts: SendOptions) -> SendResult:
        return await self._record(Sent("poll", target.id, None, opts, poll=poll), target)


def fake_plugin(pid: str = "fake", *, outbound: FakeOutbound | None = None, polls: PollSupport = PollSupport.NONE,
                media: bool = True, aliases: tuple[str, ...] = ("fk",)) -> ProviderPlugin:
    return ProviderPlugin(
        id=pid, meta=PluginMeta(label=pid.title(), aliases=aliases), gateway=FakeGateway(),
        capabilities=Capabilities(chat_types=frozenset({ChatType.DIRECT}), polls=polls, media=media),
        outbound=outbound if outbound is not None else FakeOutbound(),
    )


def fake_config(state_dir: Path, *, accounts: dict[str, dict[str, Any]] | None = None, pid: str = "fake",
                outbox: dict[str, Any] | None = None, provider: dict[str, Any] | None = None) -> dict[str, Any]:
    section: dict[str, Any] = dict(provider or {})
    if accounts is not None:
        section["accounts"] = accounts
    return {
        "gateway": {"state_dir": str(state_dir), "restart": {"initial_ms": 20, "max_ms": 100},
                    "outbox": {"retry_initial_ms": 10, "retry_max_ms": 40, "max_attempts": 4, **(outbox or {})}},
        "handler": {"kind": "none"},
        "providers": {pid: section},
    }


@asynccontextmanager
async def outbox_gateway(raw: dict[str, Any], *plugins: ProviderPlugin, wait_accounts: bool = True
                         ) -> AsyncIterator[tuple[Gateway, Outbox]]:
    """A running gateway with only the outbox service; stopped (gracefully) on exit."""
    registry = Registry(list(plugins))
    gateway = Gateway(parse_config(raw, registry, env={}), registry, services=[Outbox])
    outbox = gateway.service(Outbox)
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            if wait_accounts:
                with anyio.fail_after(5):
                    for key in gateway.config.accounts:
                        await gateway.supervisor.wait_running(key)
            yield gateway, outbox
        finally:
            gateway.request_stop()


def key(account: str = "default", provider: str = "fake") -> AccountKey:
    return AccountKey(provider, account)


async def wait_state(outbox: Outbox, id: str, state: str, timeout: float = 5.0) -> Any:
    """Wait for a record to reach ``state`` via the outbound event feed (no polling)."""
    record = outbox.get(id)
    if record is not None and record.state == state:
        return record
    with outbox.gateway.events.subscribe() as events, anyio.fail_after(timeout):
        record = outbox.get(id)
        if record is not None and record.state == state:
            return record
        async for event in events:
            if event.kind == "outbound" and event.data["id"] == id and event.data["state"] == state:
                return outbox.get(id)
    raise AssertionError("event feed closed")
