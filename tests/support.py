"""Test helpers: scripted provider plugins, in-process gateways, missing system tools."""

from __future__ import annotations

import os
import textwrap
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import pytest
from pydantic import SecretStr

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import AuthFailed, ConfigInvalid, RateLimited
from gateway.plugin import (
    AccountConfig,
    AccountContext,
    AccountKey,
    ConfigSpec,
    PluginMeta,
    ProviderPlugin,
    ReloadSpec,
    SecretSpec,
)
from gateway.registry import Registry


class ScriptedAccount(AccountConfig):
    token: SecretStr | None = None
    token_file: str | None = None
    #: ok | crash | auth | config | ratelimit | hang (ignores cancellation until released)
    mode: str = "ok"
    retry_after: float = 0.0
    color: str = "blue"  # a live key
    endpoint: str = "x"  # a restart key


class ScriptedGateway:
    """Counts runs per account and does what the account's ``mode`` says."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = defaultdict(int)
        self.active: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)
        self.release_hang = anyio.Event()
        self.contexts: dict[str, AccountContext] = {}

    async def run_account(self, ctx: AccountContext) -> None:
        name = ctx.key.account
        self.starts[name] += 1
        self.active[name] += 1
        self.max_active[name] = max(self.max_active[name], self.active[name])
        self.contexts[name] = ctx
        try:
            mode = ctx.account.mode  # type: ignore[attr-defined]
            if mode == "crash":
                raise RuntimeError(f"boom with {ctx.account.token.get_secret_value() if ctx.account.token else ''}")  # type: ignore[attr-defined]
            if mode == "auth":
                raise AuthFailed("token rejected")
            if mode == "config":
                raise ConfigInvalid("intent missing", fix="enable the intent")
            if mode == "ratelimit":
                raise RateLimited(ctx.account.retry_after)  # type: ignore[attr-defined]
            ctx.started()
            if mode == "hang":
                with anyio.CancelScope(shield=True):
                    await self.release_hang.wait()
                return
            await anyio.sleep_forever()
        finally:
            self.active[name] -= 1


def scripted_plugin(pid: str = "scripted", aliases: tuple[str, ...] = ()) -> tuple[ProviderPlugin, ScriptedGateway]:
    gateway = ScriptedGateway()
    plugin = ProviderPlugin(
        id=pid, meta=PluginMeta(label=pid.title(), aliases=aliases), gateway=gateway,
        config=ConfigSpec(model=ScriptedAccount, secrets=(SecretSpec("token", env="SCRIPTED_TOKEN", required=False),)),
        reload=ReloadSpec(live_keys=frozenset({"color"})),
    )
    return plugin, gateway


def write_config(tmp_path: Path, body: str, *, name: str = "switchboard.toml", restart: str = "") -> Path:
    path = tmp_path / name
    header = textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        [gateway.restart]
        initial_ms = 50
        max_ms = 400
        stop_timeout_s = 1.0
        {restart}
        """)
    path.write_text(header + textwrap.dedent(body))
    return path


@asynccontextmanager
async def running_gateway(path: Path, registry: Registry, *, services: list[Any] | None = None) -> AsyncIterator[Gateway]:
    """Run a gateway in a task group for the duration of the block."""
    config = load_config(path, registry)
    gateway = Gateway(config, registry, services=services if services is not None else [])
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            yield gateway
        finally:
            gateway.request_stop()


def key(provider: str, account: str) -> AccountKey:
    return AccountKey(provider, account)


def tool_unavailable(reason: str) -> NoReturn:
    """Skip a test whose system tool is missing, except under CI: ``.ci/run`` installs every
    tool the suite needs, so there a missing one fails the run instead of hiding a test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must provide it (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)
