"""Handler kinds: webhook (against a loopback server), command, python, and the envelope."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from aiohttp import web
from structlog.testing import capture_logs

from gateway.config.model import HandlerConfig
from gateway.inbound.handlers import HandlerEnv, HandlerError
from gateway.inbound.handlers.command import CommandHandler
from gateway.inbound.handlers.echo import EchoHandler
from gateway.inbound.handlers.python import PythonHandler
from gateway.inbound.messages import Reply, from_envelope, to_envelope
from gateway.plugin import MediaKind, MediaRef
from tests.test_inbound_fakes import (
    RecordingOutbox,
    Waitable,
    config_file,
    message,
    pipeline_gateway,
)

DESIGN_EXAMPLE = {"v": 1, "type": "message", "provider": "telegram", "account": "default",
                  "message": {"id": "7", "chat": {"id": "42", "type": "direct", "title": None},
                              "sender": {"id": "42", "name": "Alice", "username": "alice"},
                              "text": "hello", "media": [], "reply_to": None, "thread": None,
                              "mentioned": False, "timestamp": "2026-11-25T10:00:00Z"}}


# --- the envelope ------------------------------------------------------------------------------------


def test_envelope_is_exactly_the_design_json():
    msg = message("hello", id="7", sender="42", username="alice", provider="telegram")
    msg = msg.__class__(**{**msg.__dict__, "sender": msg.sender.__class__("42", "Alice", "alice")})
    assert to_envelope(msg) == DESIGN_EXAMPLE
    assert to_envelope(from_envelope(DESIGN_EXAMPLE)) == DESIGN_EXAMPLE


async def test_echo_names_media_in_a_note():
    msg = message("look", media=(MediaRef(MediaKind.IMAGE, "file-1", "image/png", 10, "cat.png"),))
    assert await EchoHandler().handle(to_envelope(msg), attempt=1) == [Reply("look\n[received image: cat.png]")]


# --- webhook -----------------------------------------------------------------------------------------


@asynccontextmanager
async def webhook_server(respond: Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
                         ) -> AsyncIterator[tuple[str, Waitable]]:
    """An aiohttp server on 127.0.0.1:0; ``respond`` answers each POST (which is recorded)."""
    posts = Waitable()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        posts.append((dict(request.headers), body))
        return await respond(request, body)

    app = web.Application()
    app.router.add_post("/inbound", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/inbound", posts
    finally:
        await runner.cleanup()


def webhook_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    handler = textwrap.dedent(f"""\
        [handler]
        kind = "webhook"
        url = "{url}"
        timeout_s = 2
        retry_initial_ms = 1
        retry_max_ms = 10
        """) + extra
    return config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n', handler=handler)


async def test_webhook_500_twice_then_200_is_posted_three_times_and_replied_once(tmp_path: Path):
    statuses = iter([500, 500, 200])

    async def respond(request: web.Request, body: bytes) -> web.Response:
        status = next(statuses)
        if status != 200:
            return web.Response(status=status, text="try later")
        return web.json_response({"replies": [{"text": "got it"}]})

    outbox = RecordingOutbox()
    async with webhook_server(respond) as (url, posts):
        async with pipeline_gateway(webhook_config(tmp_path, url), outbox) as (gw, pipeline):
            await gw.emit(message("hello", id="w-1"))
            await outbox.requests.wait_for(1)
            with anyio.fail_after(5):
                await pipeline.wait_settled()
    assert len(posts) == 3
    assert [json.loads(body)["message"]["id"] for _, body in posts.items] == ["w-1"] * 3
    assert [h["X-Switchboard-Attempt"] for h, _ in posts.items] == ["1", "2", "3"]
    assert outbox.texts() == ["got it"]
    assert outbox.requests.items[0].reply_to == "w-1"


async def test_webhook_signature_is_hmac_sha256_of_the_raw_body(tmp_path: Path):
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text("s3cret-value\n")

    async def respond(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=204)

    async with webhook_server(respond) as (url, posts):
        path = webhook_config(tmp_path, url, f'secret_file = "{secret_file}"\n')
        async with pipeline_gateway(path) as (gw, _pipeline):
            await gw.emit(message("sign me"))
            [(headers, body)] = await posts.wait_for(1)
    expected = "sha256=" + hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    assert headers["X-Switchboard-Signature"] == expected
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["message"]["text"] == "sign me"


async def test_webhook_without_secret_sends_no_signature(tmp_path: Path):
    async def respond(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=204)

    async with webhook_server(respond) as (url, posts):
        async with pipeline_gateway(webhook_config(tmp_path, url)) as (gw, _pipeline):
            await gw.emit(message())
            [(headers, _body)] = await posts.wait_for(1)
    assert "X-Switchboard-Signature" not in headers


async def test_webhook_4xx_is_a_permanent_failure_without_retries(tmp_path: Path):
    async def respond(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=422, text="bad payload")

    async with webhook_server(respond) as (url, posts):
        async with pipeline_gateway(webhook_config(tmp_path, url)) as (gw, pipeline):
            await gw.emit(message())
            await posts.wait_for(1)
            with anyio.fail_after(5):
                await pipeline.wait_settled()
            [failed] = pipeline.inbox.list("failed")
    assert len(posts) == 1 and failed.attempts == 1 and "HTTP 422: bad payload" in (failed.last_error or "")


async def test_webhook_429_and_408_are_retried(tmp_path: Path):
    statuses = iter([429, 408, 204])

    async def respond(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=next(statuses), headers={"Retry-After": "0"})

    async with webhook_server(respond) as (url, posts):
        async with pipeline_gateway(webhook_config(tmp_path, url)) as (gw, _pipeline):
            await gw.emit(message())
            await posts.wait_for(3)


async def test_webhook_timeout_is_retried(tmp_path: Path):
    calls = 0
    release = anyio.Event()

    async def respond(request: web.Request, body: bytes) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()  # the handler's timeout_s cuts this call off first
        return web.json_response({"replies": ["late but fine"]})

    outbox = RecordingOutbox()
    async with webhook_server(respond) as (url, posts):
        path = webhook_config(tmp_path, url).read_text().replace("timeout_s = 2", "timeout_s = 0.2")
        (tmp_path / "switchboard.toml").write_text(path)
        async with pipeline_gateway(tmp_path / "switchboard.toml", outbox) as (gw, _pipeline):
            await gw.emit(message())
            await outbox.requests.wait_for(1)
        release.set()
    assert len(posts) == 2 and outbox.texts() == ["late but fine"]


async def test_webhook_connection_refused_is_a_transient_failure():
    handler_config = HandlerConfig(kind="webhook", url="http://127.0.0.1:9/inbound", timeout_s=2)
    import aiohttp

    from gateway.inbound.handlers.webhook import WebhookHandler

    async with aiohttp.ClientSession() as session:
        handler = WebhookHandler(handler_config, HandlerEnv(http=lambda: session))
        try:
            await handler.handle(to_envelope(message()), attempt=1)
        except HandlerError as exc:
            assert not exc.permanent and "unreachable" in str(exc)
        else:
            raise AssertionError("expected a HandlerError")


# --- command -----------------------------------------------------------------------------------------


def python_command(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(code))


async def test_command_reads_the_envelope_on_stdin_and_replies_with_stdout():
    handler = CommandHandler(HandlerConfig(kind="command", command=python_command("""
        import json, sys
        msg = json.load(sys.stdin)
        print("you said: " + msg["message"]["text"])
    """)))
    assert await handler.handle(to_envelope(message("hi")), attempt=1) == [Reply("you said: hi")]


async def test_command_empty_stdout_means_no_reply():
    handler = CommandHandler(HandlerConfig(kind="command", command=("true",)))
    assert await handler.handle(to_envelope(message()), attempt=1) == []


async def test_command_timeout_kills_the_whole_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    handler = CommandHandler(HandlerConfig(kind="command", timeout_s=0.5, command=(
        "sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait")))
    try:
        await handler.handle(to_envelope(message()), attempt=1)
    except HandlerError as exc:
        assert "timed out after 0.5s" in str(exc) and not exc.permanent
    else:
        raise AssertionError("expected a timeout")
    child = int(pid_file.read_text())
    with anyio.fail_after(5):
        while _alive(child):
            await anyio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_command_nonzero_exit_is_a_failure_logged_with_the_stderr_tail():
    handler = CommandHandler(HandlerConfig(kind="command", command=python_command("""
        import sys
        print("partial output")
        sys.stderr.write("Traceback...\\nKeyError: 'text'\\n")
        sys.exit(3)
    """)))
    with capture_logs() as logs:
        try:
            await handler.handle(to_envelope(message()), attempt=1)
        except HandlerError as exc:
            assert "exited with 3: KeyError: 'text'" in str(exc)
        else:
            raise AssertionError("expected a failure")
    [event] = [e for e in logs if e["event"] == "handler.command_failed"]
    assert event["exit_code"] == 3 and "KeyError: 'text'" in event["stderr_tail"]


async def test_command_handler_in_the_pipeline_replies(tmp_path: Path):
    script = tmp_path / "reply.py"
    script.write_text("import json, sys\nprint(json.load(sys.stdin)['message']['text'].upper())\n")
    handler = f'[handler]\nkind = "command"\ncommand = ["{sys.executable}", "{script}"]\n'
    outbox = RecordingOutbox()
    path = config_file(tmp_path, '[providers.chat]\ndm_policy = "open"\n', handler=handler)
    async with pipeline_gateway(path, outbox) as (gw, _pipeline):
        await gw.emit(message("shout"))
        await outbox.requests.wait_for(1)
    assert outbox.texts() == ["SHOUT"]


# --- python ------------------------------------------------------------------------------------------


async def test_python_handler_return_values_become_replies(monkeypatch, tmp_path: Path):
    (tmp_path / "my_handlers.py").write_text(textwrap.dedent("""
        async def text(message):
            return "hi " + message["message"]["sender"]["username"]
        async def many(message):
            return [{"text": "a"}, "b", {"text": "", "media": ["/tmp/c.png"]}]
        async def nothing(message):
            return None
        async def broken(message):
            raise ValueError("nope")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    envelope = to_envelope(message(username="alice"))

    async def run(name: str) -> list[Reply]:
        return await PythonHandler(HandlerConfig(kind="python", function=f"my_handlers:{name}")).handle(
            envelope, attempt=1)

    assert await run("text") == [Reply("hi alice")]
    assert await run("many") == [Reply("a"), Reply("b"), Reply("", ("/tmp/c.png",))]
    assert await run("nothing") == []
    try:
        await run("broken")
    except HandlerError as exc:
        assert "ValueError: nope" in str(exc)
    else:
        raise AssertionError("expected a failure")


async def test_python_handler_that_cannot_be_imported_fails_clearly():
    handler = PythonHandler(HandlerConfig(kind="python", function="no_such_module_xyz:handle"))
    try:
        await handler.handle(to_envelope(message()), attempt=1)
    except HandlerError as exc:
        assert "cannot import 'no_such_module_xyz'" in str(exc)
    else:
        raise AssertionError("expected a failure")
