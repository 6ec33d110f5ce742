"""The control API in process, through its real Unix socket (and TCP listener where it matters)."""

from __future__ import annotations

import json
import os
import socket
import stat
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from switchboard_example import plugin as example

from gateway.app import Gateway
from gateway.config import load_config
from gateway.control import AlreadyRunning, ControlServer
from gateway.control.auth import check_token
from gateway.outbound import Outbox
from gateway.plugin import AccountKey, ConfigSpec, PluginMeta, ProviderPlugin
from gateway.registry import Registry
from gateway.reload import Reloader
from gateway.testing import wait_for_status
from tests.support import ScriptedAccount, ScriptedGateway

SECRET = "sekret-0123456789-abcdef"
TOKEN = "control-token-0123456789"

STABLE_GATEWAY_KEYS = {"version", "pid", "started_at", "config_path", "reload"}
STABLE_RELOAD_KEYS = {"mode", "last_at", "last_ok", "last_error"}
STABLE_ACCOUNT_KEYS = {"provider", "account", "name", "state", "enabled", "configured", "connected", "restarts",
                       "last_start_at", "last_error", "last_inbound_at", "last_outbound_at"}
STABLE_ISSUE_KEYS = {"provider", "account", "kind", "message", "fix"}


def write_config(tmp_path: Path, providers: str = "", control: str = "") -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp_path / 'state'}"
        [gateway.restart]
        initial_ms = 50
        max_ms = 400
        stop_timeout_s = 1.0
        [gateway.outbox]
        flush_timeout_s = 0.5
        [gateway.control]
        token_file = "{tmp_path / 'token'}"
        """) + textwrap.dedent(control) + '[handler]\nkind = "none"\n' + textwrap.dedent(providers))
    return path


@asynccontextmanager
async def control_gateway(path: Path, registry: Registry | None = None,
                          services: list[Any] | None = None) -> AsyncIterator[Gateway]:
    registry = registry or Registry([example])
    gateway = Gateway(load_config(path, registry), registry,
                      services=services if services is not None else [Outbox, ControlServer, Reloader])
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            yield gateway
        finally:
            gateway.request_stop()


@asynccontextmanager
async def unix_client(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.UnixConnector(path=str(gateway.config.gateway.socket_path))
    async with aiohttp.ClientSession("http://switchboard", connector=connector) as http:
        yield http


def tcp_base(gateway: Gateway) -> str:
    host, port = gateway.service(ControlServer).tcp_address
    return f"http://{host}:{port}"


async def settled(gateway: Gateway, *states: tuple[str, str]) -> None:
    """Wait until each ``(account, state)`` holds."""
    await wait_for_status(gateway.status, lambda s: all(
        (snap := s.get(AccountKey("example", account))) and snap["state"] == state for account, state in states))


THREE = """
    [providers.example.accounts.one]
    greeting = "hi"
    [providers.example.accounts.broken]
    behaviour = "crash"
    [providers.example.accounts.locked]
    behaviour = "auth"
    """


# --- status ----------------------------------------------------------------------------------------


async def test_status_has_every_stable_key(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("one", "running"), ("locked", "failed"))
        async with http.get("/v1/status") as resp:
            assert resp.status == 200
            report = await resp.json()
    assert set(report) == {"gateway", "accounts", "issues"}
    assert STABLE_GATEWAY_KEYS <= set(report["gateway"])
    assert STABLE_RELOAD_KEYS <= set(report["gateway"]["reload"])
    assert report["gateway"]["pid"] == os.getpid()
    assert [(a["provider"], a["account"]) for a in report["accounts"]] == [
        ("example", "broken"), ("example", "locked"), ("example", "one")]
    for account in report["accounts"]:
        assert STABLE_ACCOUNT_KEYS <= set(account)
    assert report["issues"] and all(set(i) == STABLE_ISSUE_KEYS for i in report["issues"])
    locked = next(i for i in report["issues"] if i["account"] == "locked")
    assert locked["kind"] == "auth" and locked["fix"]


async def test_timestamps_are_iso_utc_strings_or_null(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("one", "running"))
        report = await (await http.get("/v1/status")).json()
    one = next(a for a in report["accounts"] if a["account"] == "one")
    assert one["last_start_at"].endswith("Z") and one["last_inbound_at"] is None


async def test_socket_is_private_and_its_directory_is_created_0700(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE, control='socket = "run/ctl.sock"\n')) as gw:
        sock = gw.config.gateway.socket_path
        assert sock == tmp_path / "state" / "run" / "ctl.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert (sock.parent / "ctl.pid").read_text().strip() == str(os.getpid())
    assert not sock.exists() and not (sock.parent / "ctl.pid").exists()


async def test_probe_marks_only_the_slow_and_the_failing_account_and_returns_in_bounded_time(tmp_path):
    providers = """
        [providers.example.accounts.fine]
        [providers.example.accounts.slow]
        probe_delay_s = 30
        [providers.example.accounts.down]
        probe_fail = true
        """
    async with control_gateway(write_config(tmp_path, providers)) as gw, unix_client(gw) as http:
        await settled(gw, ("fine", "running"), ("slow", "running"), ("down", "running"))
        started = time.monotonic()
        async with http.get("/v1/status", params={"probe": "1", "timeout_ms": "500"}) as resp:
            assert resp.status == 200
            report = await resp.json()
        elapsed = time.monotonic() - started
    assert elapsed < 5  # concurrently, each bounded: not 30 s, not 3 x 500 ms in sequence
    probes = {a["account"]: a["probe"] for a in report["accounts"]}
    assert probes["fine"]["ok"] is True and probes["fine"]["connected"] is True
    assert probes["slow"]["ok"] is False and probes["slow"]["error"] == "timed out after 500 ms"
    assert probes["down"]["ok"] is False and "did not answer" in probes["down"]["error"]
    flagged = {i["account"] for i in report["issues"] if i["provider"] == "example"}
    assert flagged == {"slow", "down"}


async def test_probe_timeout_out_of_range_is_a_422_naming_the_parameter(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.get("/v1/status", params={"probe": "1", "timeout_ms": "600000"}) as resp:
            assert resp.status == 422
            error = (await resp.json())["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("timeout_ms:")


class BrokenStatus:
    async def probe(self, ctx: Any, resolved: Any, timeout: float) -> dict[str, Any]:
        raise RuntimeError("probe exploded")

    def collect_issues(self, snapshots: Any) -> list[Any]:
        raise RuntimeError("collect_issues exploded")


async def test_a_plugin_whose_status_hooks_raise_does_not_fail_the_request(tmp_path):
    broken = ProviderPlugin(id="scripted", meta=PluginMeta(label="Scripted"), gateway=ScriptedGateway(),
                            config=ConfigSpec(model=ScriptedAccount), status=BrokenStatus())
    path = write_config(tmp_path, THREE + "[providers.scripted.accounts.a]\n")
    async with control_gateway(path, Registry([example, broken])) as gw, unix_client(gw) as http:
        await wait_for_status(gw.status, lambda s: s.state(AccountKey("scripted", "a")) == "running")
        async with http.get("/v1/status", params={"probe": "1", "timeout_ms": "2000"}) as resp:
            assert resp.status == 200
            report = await resp.json()
    scripted = next(a for a in report["accounts"] if a["provider"] == "scripted")
    assert scripted["probe"]["ok"] is False and scripted["probe"]["error"] == "RuntimeError: probe exploded"
    plugin_issue = next(i for i in report["issues"] if i["provider"] == "scripted")
    assert plugin_issue["kind"] == "plugin" and "exploded" not in plugin_issue["message"]


async def test_no_secret_reaches_the_status_even_from_a_crash_message(tmp_path):
    from tests.support import scripted_plugin

    plugin, _ = scripted_plugin()
    path = write_config(tmp_path, f"""
        [providers.scripted.accounts.a]
        token = "{SECRET}"
        mode = "crash"
        [providers.example.accounts.one]
        token = "{SECRET}"
        """)
    async with control_gateway(path, Registry([example, plugin])) as gw, unix_client(gw) as http:
        await wait_for_status(gw.status, lambda s: (s.get(AccountKey("scripted", "a")) or {}).get("restarts", 0) >= 1)
        await settled(gw, ("one", "running"))
        gw.status.update(AccountKey("example", "one"), api_token=SECRET)  # a careless plugin extra
        body = await (await http.get("/v1/status", params={"probe": "1"})).text()
        events = await read_sse(http, "/v1/events", 1)
    assert "boom with" in body and SECRET not in body
    assert '"token_source": "config"' in body and '"api_token": "***"' in body
    assert SECRET not in json.dumps(events)


async def test_readyz_lists_failed_accounts_and_healthz_stays_ok(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("locked", "failed"))
        async with http.get("/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
        async with http.get("/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"ok": True}
    assert body["ok"] is False and body["reasons"] == [
        "example/locked is failed: AuthFailed: the example token was rejected"]
    assert body["error"]["code"] == "not_ready"


async def test_readyz_is_200_when_nothing_failed(tmp_path):
    async with control_gateway(write_config(tmp_path, "[providers.example.accounts.one]\n")) as gw, \
            unix_client(gw) as http:
        await settled(gw, ("one", "running"))
        async with http.get("/readyz") as resp:
            assert resp.status == 200 and await resp.json() == {"ok": True}


# --- errors -------------------------------------------------------------------------------------------


async def test_malformed_json_is_a_400_with_the_parser_message(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.post("/v1/send", data=b'{"provider": "example",') as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert error["code"] == "malformed_json"
    assert error["message"].startswith("malformed JSON body: Expecting property name enclosed in double quotes")


async def test_a_json_body_that_is_not_an_object_is_a_400(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.post("/v1/send", json=["x"]) as resp:
            assert resp.status == 400
            assert "must be a JSON object" in (await resp.json())["error"]["message"]


async def test_a_body_over_max_body_kb_is_a_413(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE, control="max_body_kb = 1\n")) as gw, \
            unix_client(gw) as http:
        body = json.dumps({"provider": "example", "to": "chat:1", "text": "x" * 4096})
        async with http.post("/v1/send", data=body) as resp:
            assert resp.status == 413
            error = (await resp.json())["error"]
    assert error == {"code": "body_too_large",
                     "message": "request body is larger than 1 KiB (gateway.control.max_body_kb)"}


async def test_validation_errors_are_422_with_dotted_field_paths(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.post("/v1/poll", json={"provider": "example", "to": "chat:1", "question": "?",
                                              "options": ["yes", ""], "colour": "red"}) as resp:
            assert resp.status == 422
            error = (await resp.json())["error"]
    paths = {p["path"] for p in error["problems"]}
    assert paths == {"options", "colour"}
    assert "colour: unknown field" in error["message"]


async def test_unknown_routes_and_wrong_methods_use_the_error_shape(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.get("/v1/nothing-here") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
        async with http.post("/v1/status") as resp:
            assert resp.status == 405 and "GET" in resp.headers["Allow"]
            assert (await resp.json())["error"]["code"] == "method_not_allowed"
        async with http.post("/v1/accounts/example/nobody/restart") as resp:
            assert resp.status == 404
            error = (await resp.json())["error"]
        async with http.post("/v1/accounts/nope/one/restart") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "unknown_provider"
    assert error["code"] == "unknown_account" and "broken, locked, one" in error["message"]


async def test_unexpected_exceptions_are_a_500_without_internals(tmp_path, monkeypatch):
    import gateway.control.api as api

    def explode(gateway: Any) -> Any:
        raise RuntimeError("internal detail /etc/secret-path")

    monkeypatch.setattr(api, "status_report", explode)
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        async with http.get("/v1/status") as resp:
            assert resp.status == 500
            text = await resp.text()
    assert "secret-path" not in text and json.loads(text)["error"]["code"] == "internal"


# --- TCP and the token ----------------------------------------------------------------------------


async def test_tcp_needs_the_bearer_token(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    async with control_gateway(path) as gw, aiohttp.ClientSession(tcp_base(gw)) as http:
        async with http.get("/v1/status") as resp:
            assert resp.status == 401
            assert await resp.json() == {"error": {"code": "unauthorized", "message": "unauthorized"}}
        async with http.get("/v1/status", headers={"Authorization": "Bearer wrong-token"}) as resp:
            assert resp.status == 401
        async with http.get("/v1/status", params={"token": TOKEN}) as resp:
            assert resp.status == 401  # query tokens only where headers are impossible
        async with http.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200 and "accounts" in await resp.json()
        async with http.get("/metrics") as resp:
            assert resp.status == 401
        async with http.get("/v1/events", params={"token": "nope"}) as resp:
            assert resp.status == 401
        async with http.get("/healthz") as resp:
            assert resp.status == 200


async def test_the_event_stream_accepts_the_token_as_a_query_parameter(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    async with control_gateway(path) as gw, aiohttp.ClientSession(tcp_base(gw)) as http:
        events = await read_sse(http, f"/v1/events?token={TOKEN}", 1)
    assert events[0][0] == "status" and events[0][1]["type"] == "snapshot"


async def test_a_missing_token_file_is_created_with_a_random_token_mode_0600(tmp_path):
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    async with control_gateway(path) as gw, aiohttp.ClientSession(tcp_base(gw)) as http:
        token_file = tmp_path / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        async with http.get("/v1/status", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200


async def test_check_token_for_websocket_handlers(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    seen: list[bool] = []

    async def handler(request: Any) -> Any:
        from aiohttp import web

        seen.append(check_token(request))
        return web.Response(text="ok")

    async with control_gateway(path) as gw:
        gw.webhooks.mount_path("/probe-page", handler)
        async with aiohttp.ClientSession(tcp_base(gw)) as http:
            await (await http.get("/probe-page")).read()
            await (await http.get("/probe-page", params={"token": TOKEN})).read()
            await (await http.get("/probe-page", headers={"Authorization": f"Bearer {TOKEN}"})).read()
        async with unix_client(gw) as http:
            await (await http.get("/probe-page")).read()
    assert seen == [False, True, True, True]


async def test_the_dashboard_is_served_on_both_listeners_with_a_strict_csp(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    async with control_gateway(path) as gw:
        for session in (aiohttp.ClientSession(tcp_base(gw)), None):
            async with (session or unix_client(gw)) as http:
                page = await http.get("/")
                assert page.status == 200 and "text/html" in page.headers["Content-Type"]
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]
                assert '<script src="/ui/dashboard.js">' in await page.text()
                script = await http.get("/ui/dashboard.js")
                assert script.status == 200 and "EventSource" in await script.text()


# --- shutdown --------------------------------------------------------------------------------------


async def test_requests_that_create_work_get_503_once_shutdown_began(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("one", "running"))
        gw.service(ControlServer).stop_accepting()
        for method, url, body in (("POST", "/v1/send", {"provider": "example", "to": "chat:1", "text": "x"}),
                                  ("POST", "/v1/poll", {}), ("POST", "/v1/reload", None),
                                  ("POST", "/v1/accounts/example/one/restart", None),
                                  ("POST", "/v1/accounts/example/one/start", None)):
            async with http.request(method, url, json=body) as resp:
                assert resp.status == 503, url
                assert (await resp.json())["error"]["code"] == "shutting_down"
        async with http.get("/v1/status") as resp:
            assert resp.status == 200
        async with http.get("/readyz") as resp:
            assert resp.status == 503


async def test_open_event_streams_end_when_the_gateway_stops(tmp_path):
    path = write_config(tmp_path, THREE)
    ended = anyio.Event()
    async with control_gateway(path) as gw:
        connector = aiohttp.UnixConnector(path=str(gw.config.gateway.socket_path))
        http = aiohttp.ClientSession("http://switchboard", connector=connector)
        resp = await http.get("/v1/events")

        async def drain() -> None:
            with anyio.fail_after(10):
                async for _ in resp.content:
                    pass
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            gw.request_stop()
            with anyio.fail_after(10):
                await ended.wait()
        await http.close()


# --- accounts, reload, events, metrics ----------------------------------------------------------


async def test_restarting_a_failed_account_answers_with_its_new_state(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("locked", "failed"))
        async with http.post("/v1/accounts/ex/Locked/restart") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["ok"] is True and body["action"] == "restart"
    assert body["account"]["state"] == "failed" and body["account"]["starts"] == 2


async def test_stop_then_start_an_account(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        await settled(gw, ("one", "running"))
        stopped = await (await http.post("/v1/accounts/example/one/stop")).json()
        started = await (await http.post("/v1/accounts/example/one/start")).json()
    assert stopped["account"]["state"] == "stopped" and started["account"]["state"] == "running"


async def test_starting_a_disabled_account_is_a_409_that_says_how_to_enable_it(tmp_path):
    path = write_config(tmp_path, "[providers.example.accounts.off]\nenabled = false\n")
    async with control_gateway(path) as gw, unix_client(gw) as http:
        async with http.post("/v1/accounts/example/off/start") as resp:
            assert resp.status == 409
            message = (await resp.json())["error"]["message"]
    assert "switchboard providers enable --provider example --account off" in message


async def test_reload_returns_the_plan_and_actions_and_is_counted_and_streamed(tmp_path):
    path = write_config(tmp_path, "[providers.example.accounts.one]\n")
    async with control_gateway(path) as gw, unix_client(gw) as http:
        await settled(gw, ("one", "running"))
        async with http.get("/v1/events") as stream:
            first = await next_sse(stream)
            path.write_text(path.read_text() + "[providers.example.accounts.two]\n")
            async with http.post("/v1/reload") as resp:
                result = await resp.json()
            with anyio.fail_after(10):
                while (event := await next_sse(stream))[0] != "reload":
                    pass
        metrics = await (await http.get("/metrics")).text()
    assert first[0] == "status" and first[1]["type"] == "snapshot"
    assert result["ok"] is True and result["trigger"] == "api"
    assert result["plan"]["start"] == ["example/two"] and result["actions"] == ["started: example/two"]
    assert event[1]["data"]["plan"]["start"] == ["example/two"]
    assert 'switchboard_reloads_total{outcome="ok"} 1.0' in metrics
    assert gw.status.gateway["reload"]["last_ok"] is True


async def test_a_rejected_reload_is_counted_as_rejected(tmp_path):
    path = write_config(tmp_path, "[providers.example.accounts.one]\n")
    async with control_gateway(path) as gw, unix_client(gw) as http:
        path.write_text(path.read_text() + "[providers.example.accounts.two]\nbogus = 1\n")
        result = await (await http.post("/v1/reload")).json()
        metrics = await (await http.get("/metrics")).text()
        report = await (await http.get("/v1/status")).json()
    assert result["ok"] is False and "providers.example.accounts.two.bogus: unknown key" in result["errors"]
    assert 'switchboard_reloads_total{outcome="rejected"} 1.0' in metrics
    assert report["gateway"]["reload"]["last_ok"] is False
    assert any(i["kind"] == "config" for i in report["issues"])


async def test_events_stream_status_changes_issues_and_heartbeats(tmp_path):
    async with control_gateway(write_config(tmp_path, THREE)) as gw, unix_client(gw) as http:
        gw.service(ControlServer).heartbeat_s = 0.05
        await settled(gw, ("one", "running"), ("locked", "failed"))
        async with http.get("/v1/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            await next_sse(stream)  # the snapshot
            await http.post("/v1/accounts/example/one/stop")
            seen: list[tuple[str, dict[str, Any]]] = []
            with anyio.fail_after(10):
                while not any(e == "status" and d.get("fields", {}).get("state") == "stopped" for e, d in seen):
                    seen.append(await next_sse(stream))
            with anyio.fail_after(10):
                while await stream.content.readline() != b": heartbeat\n":
                    pass
    change = next(d for e, d in seen if e == "status" and d.get("fields", {}).get("state") == "stopped")
    assert change["type"] == "account" and (change["provider"], change["account"]) == ("example", "one")


async def test_outbound_results_appear_on_the_event_stream(tmp_path):
    async with control_gateway(write_config(tmp_path, "[providers.example.accounts.default]\n")) as gw, \
            unix_client(gw) as http:
        await settled(gw, ("default", "running"))
        async with http.get("/v1/events") as stream:
            await next_sse(stream)
            await http.post("/v1/send", json={"provider": "example", "to": "chat:1", "text": "hello"})
            with anyio.fail_after(10):
                while (event := await next_sse(stream))[0] != "outbound":
                    pass
    assert event[1]["kind"] == "outbound"


# --- send, poll, outbox ----------------------------------------------------------------------------


async def test_send_queues_a_message_and_wait_returns_it_delivered(tmp_path):
    async with control_gateway(write_config(tmp_path, "[providers.example.accounts.default]\n")) as gw, \
            unix_client(gw) as http:
        await settled(gw, ("default", "running"))
        async with http.post("/v1/send", json={"provider": "ex", "to": "chat:42", "text": "hi"}) as resp:
            assert resp.status == 202
            queued = (await resp.json())["message"]
        async with http.post("/v1/send?wait=1", json={"provider": "example", "to": "chat:42", "text": "again",
                                                       "idempotency_key": "k1"}) as resp:
            assert resp.status == 200
            delivered = (await resp.json())["message"]
    assert queued["provider"] == "example" and queued["account"] == "default"
    assert delivered["state"] == "delivered" and delivered["results"][0]["message_id"]


async def test_a_poll_is_accepted(tmp_path):
    async with control_gateway(write_config(tmp_path, "[providers.example.accounts.default]\n")) as gw, \
            unix_client(gw) as http:
        await settled(gw, ("default", "running"))
        async with http.post("/v1/poll?wait=1", json={"provider": "example", "to": "chat:42", "question": "Lunch?",
                                                       "options": ["pizza", "sushi"]}) as resp:
            assert resp.status == 200
            assert (await resp.json())["message"]["state"] == "delivered"


async def test_send_errors_are_classified(tmp_path):
    async with control_gateway(write_config(tmp_path, "[providers.example.accounts.default]\n")) as gw, \
            unix_client(gw) as http:
        async with http.post("/v1/send", json={"provider": "nope", "to": "chat:1", "text": "x"}) as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_provider"
        async with http.post("/v1/send", json={"provider": "example", "to": "fax:1", "text": "x"}) as resp:
            assert resp.status == 422
            error = (await resp.json())["error"]
        async with http.post("/v1/send", json={"provider": "example", "to": "chat:1"}) as resp:
            assert resp.status == 422 and "give text, media, or both" in (await resp.json())["error"]["message"]
    assert error["code"] == "invalid_target" and "chat:<id> or user:<id>" in error["message"]


async def test_outbox_list_retry_and_drop(tmp_path):
    path = write_config(tmp_path, '[providers.example.accounts.default]\nurl = "http://127.0.0.1:9/nothing"\n')
    async with control_gateway(path) as gw, unix_client(gw) as http:
        await settled(gw, ("default", "running"))
        queued = (await (await http.post("/v1/send", json={"provider": "example", "to": "chat:1",
                                                            "text": "x"})).json())["message"]
        listing = await (await http.get("/v1/outbox")).json()
        assert queued["id"] in [m["id"] for m in listing["messages"]]
        async with http.get("/v1/outbox", params={"state": "lost"}) as resp:
            assert resp.status == 422
        async with http.delete(f"/v1/outbox/{queued['id']}") as resp:
            assert resp.status == 200 and await resp.json() == {"dropped": queued["id"]}
        async with http.delete(f"/v1/outbox/{queued['id']}") as resp:
            assert resp.status == 404
        async with http.post("/v1/outbox/nope/retry") as resp:
            assert resp.status == 404 and "switchboard outbox list" in (await resp.json())["error"]["message"]


# --- the socket file ---------------------------------------------------------------------------


async def test_a_stale_socket_from_a_dead_process_is_replaced(tmp_path):
    path = write_config(tmp_path, THREE)
    sock_path = tmp_path / "state" / "control.sock"
    sock_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves behind
    async with control_gateway(path) as gw, unix_client(gw) as http:
        async with http.get("/healthz") as resp:
            assert resp.status == 200


async def test_a_second_gateway_on_the_same_socket_is_refused_with_the_pid(tmp_path):
    path = write_config(tmp_path, THREE)
    async with control_gateway(path):
        registry = Registry([example])
        second = Gateway(load_config(path, registry), registry, services=[ControlServer])
        error = await start_error(second)
    assert isinstance(error, AlreadyRunning)
    assert str(error) == f"switchboard is already running (pid {os.getpid()}) on {tmp_path / 'state' / 'control.sock'}"


async def test_without_the_pid_file_the_live_daemon_is_asked_for_its_pid(tmp_path):
    path = write_config(tmp_path, THREE)
    async with control_gateway(path):
        (tmp_path / "state" / "control.pid").unlink()  # removed by hand: the lock is gone too
        registry = Registry([example])
        error = await start_error(Gateway(load_config(path, registry), registry, services=[ControlServer]))
    assert isinstance(error, AlreadyRunning) and error.pid == os.getpid()


async def test_an_empty_token_file_stops_the_start_with_a_clear_message(tmp_path):
    from gateway.control.auth import TokenFileError

    (tmp_path / "token").write_text("\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    registry = Registry([example])
    error = await start_error(Gateway(load_config(path, registry), registry, services=[ControlServer]))
    assert isinstance(error, TokenFileError)
    assert str(error).startswith(f"the control token file {tmp_path / 'token'} is empty")
    assert not (tmp_path / "state" / "control.sock").exists()


async def test_a_rotated_token_applies_without_a_restart(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_config(tmp_path, THREE, control='listen = "127.0.0.1:0"\n')
    async with control_gateway(path) as gw, aiohttp.ClientSession(tcp_base(gw)) as http:
        (tmp_path / "token").write_text("a-brand-new-token-0123456789\n")
        async with http.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 401
        async with http.get("/v1/status", headers={"Authorization": "Bearer a-brand-new-token-0123456789"}) as resp:
            assert resp.status == 200


async def test_a_tcp_port_in_use_stops_the_start_with_a_clear_message(tmp_path):
    from gateway.control.server import ControlListenError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, THREE, control=f'listen = "127.0.0.1:{port}"\n')
        registry = Registry([example])
        error = await start_error(Gateway(load_config(path, registry), registry, services=[ControlServer]))
    assert isinstance(error, ControlListenError)
    assert str(error) == f"cannot listen on 127.0.0.1:{port} (gateway.control.listen): Address already in use"
    assert not (tmp_path / "state" / "control.sock").exists()


async def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path):
    from gateway.control.socketfile import ControlSocketError

    path = write_config(tmp_path, THREE)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "control.sock").write_text("precious")
    registry = Registry([example])
    gateway = Gateway(load_config(path, registry), registry, services=[ControlServer])
    error = await start_error(gateway)
    assert isinstance(error, ControlSocketError) and "exists and is not a socket" in str(error)
    assert (tmp_path / "state" / "control.sock").read_text() == "precious"


# --- helpers -----------------------------------------------------------------------------------------


async def start_error(gateway: Gateway) -> BaseException:
    """The one error that stopped ``gateway`` from starting (raised as is, or in a group)."""
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - unwrapped below
        await gateway.run()
    group = caught.value
    while isinstance(group, BaseExceptionGroup):
        assert len(group.exceptions) == 1, group.exceptions
        group = group.exceptions[0]
    return group


async def next_sse(stream: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next event (comments skipped)."""
    name, data = "message", []
    while True:
        line = (await stream.content.readline()).decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            return name, json.loads("\n".join(data))


async def read_sse(http: aiohttp.ClientSession, url: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    async with http.get(url) as stream:
        assert stream.status == 200, await stream.text()
        with anyio.fail_after(10):
            while len(out) < count:
                out.append(await next_sse(stream))
    return out
