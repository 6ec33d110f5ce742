"""An example third-party Switchboard provider.

``example`` accounts "connect" at once and stay up until stopped. Sends go to an HTTP
endpoint (``url``) as JSON when one is configured -- enough to exercise the whole outbound
path against a loopback server -- and are otherwise numbered in memory.

Installed through the ``switchboard.providers`` entry point (see this directory's
pyproject.toml); ``docs/writing-a-provider.md`` walks through it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import aiohttp
import anyio
from pydantic import SecretStr

from gateway.errors import (
    AccountNotReady,
    AuthFailed,
    PermanentSendError,
    RateLimited,
    TargetError,
    TargetNotFound,
    TransientSendError,
)
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    BaseOutbound,
    Capabilities,
    ChatType,
    ConfigSpec,
    PluginMeta,
    PollSupport,
    ProviderPlugin,
    ReloadSpec,
    ResolvedAccount,
    SecretSpec,
    SendOptions,
    SendResult,
    StatusIssue,
    Target,
)


class ExampleAccount(AccountConfig):
    """Keys of one ``[providers.example.accounts.<id>]`` table."""

    token: SecretStr | None = None
    token_file: str | None = None
    url: str | None = None
    #: ``ok`` (default), ``crash`` (raise at start), ``auth`` (AuthFailed at start).
    behaviour: str = "ok"
    greeting: str = "hello"
    #: What ``switchboard status --probe`` finds: a slow probe, or a failing one.
    probe_delay_s: float = 0.0
    probe_fail: bool = False


class ExampleClient:
    """The one client per account: an HTTP session when ``url`` is set."""

    def __init__(self, account: ExampleAccount, session: aiohttp.ClientSession | None):
        self.account = account
        self.session = session
        self.ids = itertools.count(1)


@asynccontextmanager
async def open_client(resolved: ResolvedAccount) -> AsyncIterator[ExampleClient]:
    account = resolved.config
    assert isinstance(account, ExampleAccount)
    if account.url is None:
        yield ExampleClient(account, None)
        return
    async with aiohttp.ClientSession() as session:
        yield ExampleClient(account, session)


class ExampleGateway:
    async def run_account(self, ctx: AccountContext) -> None:
        account = ctx.account
        assert isinstance(account, ExampleAccount)
        if account.behaviour == "crash":
            raise RuntimeError("example account crashed on purpose")
        if account.behaviour == "auth":
            raise AuthFailed("the example token was rejected")
        ctx.set_status(greeting=account.greeting)
        ctx.started()
        await anyio.sleep_forever()


class ExampleOutbound(BaseOutbound):
    text_chunk_limit = 2000
    chunker = "plain"

    def resolve_target(self, raw: str, account: AccountConfig) -> Target:
        value = raw.strip().removeprefix("example:")
        kind, _, ident = value.partition(":") if ":" in value else ("chat", "", value)
        if kind not in ("chat", "user") or not ident:
            raise TargetError(f"Example target must be chat:<id> or user:<id>, got {raw!r}")
        return Target(kind, ident)

    async def send_text(self, ctx: AccountContext, target: Target, text: str, opts: SendOptions) -> SendResult:
        client: ExampleClient = ctx.client
        if client.session is None:
            return SendResult(str(next(client.ids)), chat_id=target.id)
        # delivery_id (outbox id + part index) lets the receiving end drop a resend after a crash.
        payload = {"account": ctx.key.account, "target": str(target), "text": text, "reply_to": opts.reply_to,
                   "delivery_id": opts.delivery_id}
        try:
            async with client.session.post(client.account.url or "", json=payload) as resp:
                status = resp.status
                if status == 429:
                    raise RateLimited(float(resp.headers.get("Retry-After", "1")))
                if status == 404:
                    raise TargetNotFound(f"unknown chat {target.id}")
                if 400 <= status < 500:
                    raise PermanentSendError(f"rejected: HTTP {status}")
                if status >= 500:
                    raise TransientSendError(f"server error: HTTP {status}")
                body = await resp.json(content_type=None)  # {"id": ...}; an empty body reads as None
        except aiohttp.ClientError as exc:
            raise TransientSendError(f"network error: {exc}") from None
        if not isinstance(body, dict):
            body = {}
        return SendResult(str(body.get("id", next(client.ids))), chat_id=target.id)


class ExampleStatus:
    """Probes and status issues (``switchboard status --probe``)."""

    async def probe(self, ctx: AccountContext | None, resolved: ResolvedAccount, timeout: float) -> dict[str, object]:
        account = resolved.config
        assert isinstance(account, ExampleAccount)
        await anyio.sleep(account.probe_delay_s)  # the core bounds every probe by ``timeout``
        if account.probe_fail:
            raise AccountNotReady("the example service did not answer")
        return {"ok": True, "connected": ctx is not None}

    def collect_issues(self, snapshots: Sequence[Mapping[str, object]]) -> list[StatusIssue]:
        issues = []
        for snap in snapshots:
            probe = snap.get("probe")
            if isinstance(probe, Mapping) and not probe.get("ok"):
                issues.append(StatusIssue("example", str(snap["account"]), "runtime",
                                          f"probe failed: {probe.get('error')}",
                                          "check the account's url, then run `switchboard status --probe` again"))
        return issues


plugin = ProviderPlugin(
    id="example",
    meta=PluginMeta(label="Example", selection_label="Example (test provider)", aliases=("ex",),
                    blurb="A provider that shows how plugins are written."),
    capabilities=Capabilities(chat_types=frozenset({ChatType.DIRECT, ChatType.GROUP}), polls=PollSupport.EMULATED),
    config=ConfigSpec(model=ExampleAccount, secrets=(SecretSpec("token", env="EXAMPLE_TOKEN", required=False),)),
    gateway=ExampleGateway(),
    outbound=ExampleOutbound(),
    status=ExampleStatus(),
    reload=ReloadSpec(live_keys=frozenset({"greeting"})),
    open_client=open_client,
)
