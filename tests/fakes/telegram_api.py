"""A wire-level fake of the Telegram Bot API (PROVIDERS.md §1.3) on ``127.0.0.1:0``.

Routes: ``/bot<TOKEN>/<method>`` (GET query, JSON, form-urlencoded and multipart bodies) and
``/file/bot<TOKEN>/<path>``. Unknown tokens get 401. ``getUpdates`` long-polls with real offset
semantics (``offset`` confirms every update below it) and a second overlapping ``getUpdates``
for the same token terminates the first with 409. ``setWebhook`` switches a token to webhook
delivery: queued updates are POSTed to the URL with the ``X-Telegram-Bot-Api-Secret-Token``
header and retried until the receiver answers 200.

    async with TelegramFake() as fake:
        fake.add_bot("123:ABC", username="gw_bot")
        fake.inject_message("123:ABC", text="hello")
        ...
        await fake.wait_for_request("sendMessage", 1)
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
POLL_MAX_OPTIONS = 12
SUPERGROUP_MIN = -1_000_000_000_000

_HTML_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
                        "code", "pre", "blockquote", "tg-emoji"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*?)?)\s*(/?)>")
_ENTITY = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot);")
_MEDIA_FIELDS = {"sendphoto": "photo", "senddocument": "document", "sendvideo": "video", "sendaudio": "audio",
                 "sendvoice": "voice", "sendanimation": "animation"}
_JSON_FIELDS = frozenset({"reply_parameters", "options", "allowed_updates", "reply_markup", "entities",
                          "caption_entities", "link_preview_options"})


class HtmlError(ValueError):
    """Telegram would answer 400 "can't parse entities"."""


def visible_text(text: str) -> str:
    """Check Telegram HTML like the Bot API does and return the visible text."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "<":
            tag = _TAG.match(text, i)
            if not tag:
                raise HtmlError(f"Unexpected '<' at byte offset {len(text[:i].encode())}")
            closing, name = tag.group(1) == "/", tag.group(2).lower()
            if name not in _HTML_TAGS:
                raise HtmlError(f'Unsupported start tag "{name}" at byte offset {len(text[:i].encode())}')
            if closing:
                if not stack or stack[-1] != name:
                    raise HtmlError(f'Unmatched end tag at byte offset {len(text[:i].encode())}, expected '
                                    f'"</{stack[-1] if stack else ""}>", found "</{name}>"')
                stack.pop()
            else:
                stack.append(name)
            i = tag.end()
        elif c == "&":
            entity = _ENTITY.match(text, i)
            if not entity:
                raise HtmlError(f"Character entity expected at byte offset {len(text[:i].encode())}")
            out.append(html.unescape(entity.group()))
            i = entity.end()
        elif c == ">":
            raise HtmlError(f"Unexpected '>' at byte offset {len(text[:i].encode())}")
        else:
            out.append(c)
            i += 1
    if stack:
        raise HtmlError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    """An ``ok: false`` answer."""

    def __init__(self, status: int, description: str, parameters: Mapping[str, Any] | None = None):
        self.status = status
        self.description = description
        self.parameters = dict(parameters or {})
        super().__init__(f"{status} {description}")


@dataclass(frozen=True)
class FakeFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class FakeRequest:
    """One recorded Bot API call. ``status``/``result`` are filled when it is answered."""

    method: str
    token: str
    params: dict[str, Any]
    files: dict[str, FakeFile]
    content_type: str
    status: int | None = None
    result: Any = None
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass
class _Failure:
    status: int
    description: str
    parameters: dict[str, Any]
    times: int


@dataclass
class _Poll:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    terminated: bool = False


@dataclass
class FakeBot:
    token: str
    id: int
    username: str
    first_name: str
    can_read_all_group_messages: bool
    pending: list[dict[str, Any]] = field(default_factory=list)
    poller: _Poll | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_allowed: list[str] | None = None
    webhook_changed: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_task: asyncio.Task[None] | None = None

    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}


class TelegramFake:
    """The fake server plus handles to inject updates, arm failures and read requests."""

    def __init__(self) -> None:
        self.bots: dict[str, FakeBot] = {}
        self.requests: list[FakeRequest] = []
        #: Webhook POSTs made by the fake: ``(token, update_id, HTTP status or None)``.
        self.webhook_deliveries: list[tuple[str, int, int | None]] = []
        self.files: dict[str, tuple[str, FakeFile]] = {}  # file_id -> (file_path, file)
        self.members: dict[tuple[str, int], dict[str, Any]] = {}
        self.usernames: dict[str, int] = {}
        self.chat_types: dict[int, str] = {}
        self.migrated: dict[int, int] = {}
        self.base_url = ""
        self._failures: dict[str, list[_Failure]] = {}
        self._changed = asyncio.Event()
        self._update_ids = itertools.count(100)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._file_ids = itertools.count(1)
        self._poll_ids = itertools.count(5000)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> TelegramFake:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        # Cancel a long poll whose client went away, like the real server forgets it.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        for bot in self.bots.values():
            if bot.poller is not None:
                bot.poller.wake.set()
            await self._stop_webhook(bot)
        assert self._runner is not None and self._session is not None
        await self._session.close()
        await self._runner.cleanup()

    # --- test handles -----------------------------------------------------------------------

    def add_bot(self, token: str, *, username: str = "gw_bot", bot_id: int | None = None,
                first_name: str = "GW", can_read_all_group_messages: bool = False) -> FakeBot:
        bot_id = bot_id if bot_id is not None else int(token.split(":", 1)[0])
        bot = FakeBot(token, bot_id, username, first_name, can_read_all_group_messages)
        self.bots[token] = bot
        return bot

    def add_chat(self, chat_id: int, *, username: str | None = None, chat_type: str | None = None) -> None:
        """Name a chat (unknown @usernames are "chat not found") or fix its type (``channel``)."""
        if username:
            self.usernames[username.lstrip("@").lower()] = chat_id
        if chat_type:
            self.chat_types[chat_id] = chat_type

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """Sends to ``old_chat_id`` now fail with 400 + ``migrate_to_chat_id``."""
        self.migrated[old_chat_id] = new_chat_id

    def set_member(self, chat_id: int | str, user_id: int, status: str = "member") -> None:
        self.members[(str(chat_id), user_id)] = {"status": status, "user": {"id": user_id, "is_bot": True}}

    def add_file(self, data: bytes, *, file_path: str = "documents/file.bin", mime: str = "application/octet-stream",
                 file_id: str | None = None) -> str:
        """Store a file that ``getFile`` and ``/file/bot<token>/<path>`` serve; returns its file id."""
        file_id = file_id or f"FILE{next(self._file_ids)}"
        self.files[file_id] = (file_path, FakeFile(file_path.rsplit("/", 1)[-1], mime, data))
        return file_id

    def fail_next(self, method: str, status: int, description: str, *, retry_after: float | None = None,
                  times: int = 1, parameters: Mapping[str, Any] | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` (any token) with this error."""
        params = dict(parameters or {})
        if retry_after is not None:
            params["retry_after"] = retry_after
        self._failures.setdefault(method.lower(), []).append(_Failure(status, description, params, times))

    def inject_update(self, token: str, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update for ``token`` (an ``update_id`` is assigned when missing)."""
        bot = self.bots[token]
        queued = dict(update)
        queued.setdefault("update_id", next(self._update_ids))
        bot.pending.append(queued)
        if bot.poller is not None:
            bot.poller.wake.set()
        bot.webhook_changed.set()
        return queued

    def inject_message(self, token: str, text: str | None = "hello", *, chat_id: int = 42,
                       chat_type: str = "private", from_id: int = 42, first_name: str = "Alice",
                       username: str | None = "alice", update_type: str = "message", message_id: int | None = None,
                       **fields: Any) -> dict[str, Any]:
        """Queue a ``message`` update (extra message fields pass through: entities, photo...)."""
        if message_id is None:
            message_id = next(self._counter(chat_id))
        message = build_message(text, chat_id=chat_id, chat_type=chat_type, from_id=from_id, first_name=first_name,
                                username=username, message_id=message_id, **fields)
        return self.inject_update(token, {update_type: message})

    def inject_poll_answer(self, token: str, poll_id: str, option_ids: list[int], *, user_id: int = 42,
                           first_name: str = "Alice") -> dict[str, Any]:
        answer = {"poll_id": poll_id, "user": {"id": user_id, "is_bot": False, "first_name": first_name},
                  "option_ids": option_ids}
        return self.inject_update(token, {"poll_answer": answer})

    def calls(self, method: str, token: str | None = None) -> list[FakeRequest]:
        return [r for r in self.requests if r.method.lower() == method.lower() and token in (None, r.token)]

    async def wait_for_request(self, method: str, count: int = 1, timeout: float = 5.0, *,
                               token: str | None = None) -> list[FakeRequest]:
        """Wait until ``count`` calls of ``method`` were received; returns them."""
        async with asyncio.timeout(timeout):
            while len(self.calls(method, token)) < count:
                await self._wait_changed()
        return self.calls(method, token)

    async def wait_for_answer(self, request: FakeRequest, timeout: float = 5.0) -> FakeRequest:
        async with asyncio.timeout(timeout):
            await request.answered.wait()
        return request

    async def wait_for_delivery(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, int, int | None]]:
        """Wait until the fake made ``count`` webhook POSTs."""
        async with asyncio.timeout(timeout):
            while len(self.webhook_deliveries) < count:
                await self._wait_changed()
        return list(self.webhook_deliveries)

    def pending(self, token: str) -> list[dict[str, Any]]:
        """Updates not yet confirmed by an offset (or by a webhook 200)."""
        return list(self.bots[token].pending)

    # --- plumbing ---------------------------------------------------------------------------

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _counter(self, chat_id: int) -> itertools.count[int]:
        return self._message_ids.setdefault(chat_id, itertools.count(1))

    async def _api(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        params, files = await _read_params(request)
        record = FakeRequest(method, token, params, files, request.content_type)
        self.requests.append(record)
        self._notify()
        try:
            try:
                result = await self._dispatch(record)
            except ApiError as exc:
                record.status, record.result = exc.status, exc.description
                body: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
                if exc.parameters:
                    body["parameters"] = exc.parameters
                return web.json_response(body, status=exc.status)
            record.status, record.result = 200, result
            return web.json_response({"ok": True, "result": result})
        finally:
            record.answered.set()
            self._notify()

    async def _dispatch(self, req: FakeRequest) -> Any:
        bot = self.bots.get(req.token)
        if bot is None:
            raise ApiError(401, "Unauthorized")
        armed = self._failures.get(req.method.lower())
        if armed:
            failure = armed[0]
            failure.times -= 1
            if failure.times <= 0:
                armed.pop(0)
            raise ApiError(failure.status, failure.description, failure.parameters)
        handler = getattr(self, f"_m_{req.method.lower()}", None)
        if handler is None:
            media_field = _MEDIA_FIELDS.get(req.method.lower())
            if media_field is None:
                raise ApiError(404, "Not Found")
            return self._send_media(bot, req, media_field)
        return await handler(bot, req)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] not in self.bots:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["path"]
        for file_path, stored in self.files.values():
            if file_path == path:
                return web.Response(body=stored.data, content_type=stored.content_type)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    # --- methods ----------------------------------------------------------------------------

    async def _m_getme(self, bot: FakeBot, req: FakeRequest) -> Any:
        return {**bot.user(), "can_join_groups": True,
                "can_read_all_group_messages": bot.can_read_all_group_messages, "supports_inline_queries": False}

    async def _m_getwebhookinfo(self, bot: FakeBot, req: FakeRequest) -> Any:
        info: dict[str, Any] = {"url": bot.webhook_url or "", "has_custom_certificate": False,
                                "pending_update_count": len(bot.pending)}
        if bot.webhook_allowed is not None:
            info["allowed_updates"] = bot.webhook_allowed
        return info

    async def _m_setwebhook(self, bot: FakeBot, req: FakeRequest) -> Any:
        url = str(req.params.get("url") or "")
        if not url:
            return await self._m_deletewebhook(bot, req)
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        await self._stop_webhook(bot)
        bot.webhook_url, bot.webhook_secret = url, req.params.get("secret_token")
        bot.webhook_allowed = req.params.get("allowed_updates")
        if _truthy(req.params.get("drop_pending_updates")):
            bot.pending.clear()
        if bot.poller is not None:
            bot.poller.terminated = True
            bot.poller.wake.set()
        bot.webhook_task = asyncio.create_task(self._deliver_webhooks(bot))
        return True

    async def _m_deletewebhook(self, bot: FakeBot, req: FakeRequest) -> Any:
        await self._stop_webhook(bot)
        if _truthy(req.params.get("drop_pending_updates")):
            bot.pending.clear()
        return True

    async def _m_getupdates(self, bot: FakeBot, req: FakeRequest) -> Any:
        if bot.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = int(req.params.get("offset") or 0)
        limit = max(1, min(100, int(req.params.get("limit") or 100)))
        timeout = float(req.params.get("timeout") or 0)
        allowed = req.params.get("allowed_updates")
        if offset > 0:
            bot.pending = [u for u in bot.pending if u["update_id"] >= offset]
        elif offset < 0:
            bot.pending = bot.pending[offset:]
        if bot.poller is not None:
            # Only one poller per token: the newcomer terminates the one already waiting.
            bot.poller.terminated = True
            bot.poller.wake.set()
        poll = bot.poller = _Poll()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if poll.terminated:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only "
                                        "one bot instance is running")
                ready = [u for u in bot.pending if not allowed or _update_type(u) in allowed][:limit]
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._closing:
                    return ready
                poll.wake.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await poll.wake.wait()
                except TimeoutError:
                    pass
        finally:
            if bot.poller is poll:
                bot.poller = None

    async def _m_sendmessage(self, bot: FakeBot, req: FakeRequest) -> Any:
        chat = self._chat(req.params.get("chat_id"))
        text = str(req.params.get("text") or "")
        shown = self._parse(text, req.params.get("parse_mode"))
        if not shown.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(shown) > TEXT_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._message(bot, chat, req, text=shown)

    def _send_media(self, bot: FakeBot, req: FakeRequest, media_field: str) -> Any:
        chat = self._chat(req.params.get("chat_id"))
        caption = req.params.get("caption")
        fields: dict[str, Any] = {}
        if caption:
            fields["caption"] = self._parse(str(caption), req.params.get("parse_mode"))
            if utf16_len(fields["caption"]) > CAPTION_LIMIT:
                raise ApiError(400, "Bad Request: message caption is too long")
        upload = req.files.get(media_field)
        if upload is None:
            ref = req.params.get(media_field)
            if not ref or str(ref) not in self.files:
                raise ApiError(400, f"Bad Request: there is no {media_field} in the request")
            file_id, size = str(ref), len(self.files[str(ref)][1].data)
        else:
            file_id = self.add_file(upload.data, file_path=f"{media_field}s/{upload.filename}", mime=upload.content_type)
            size = len(upload.data)
        described = {"file_id": file_id, "file_unique_id": f"U{file_id}", "file_size": size}
        fields[media_field] = [dict(described, width=90, height=90)] if media_field == "photo" else described
        return self._message(bot, chat, req, **fields)

    async def _m_sendpoll(self, bot: FakeBot, req: FakeRequest) -> Any:
        chat = self._chat(req.params.get("chat_id"))
        options = req.params.get("options") or []
        texts = [o["text"] if isinstance(o, Mapping) else str(o) for o in options]
        if not 1 <= len(texts) <= POLL_MAX_OPTIONS:
            raise ApiError(400, f"Bad Request: poll must have 1-{POLL_MAX_OPTIONS} options")
        is_anonymous = _truthy(req.params.get("is_anonymous", True))
        if chat["type"] == "channel" and not is_anonymous:
            raise ApiError(400, "Bad Request: non-anonymous polls can't be sent to channel chats")
        poll = {"id": str(next(self._poll_ids)), "question": req.params.get("question"),
                "options": [{"text": t, "voter_count": 0} for t in texts], "total_voter_count": 0,
                "is_closed": False, "is_anonymous": is_anonymous, "type": "regular",
                "allows_multiple_answers": _truthy(req.params.get("allows_multiple_answers"))}
        if "open_period" in req.params:
            poll["open_period"] = int(req.params["open_period"])
        return self._message(bot, chat, req, poll=poll)

    async def _m_getfile(self, bot: FakeBot, req: FakeRequest) -> Any:
        file_id = str(req.params.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, stored = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"U{file_id}", "file_size": len(stored.data), "file_path": path}

    async def _m_getchatmember(self, bot: FakeBot, req: FakeRequest) -> Any:
        chat = str(self._chat(req.params.get("chat_id"))["id"])
        member = self.members.get((chat, int(req.params.get("user_id") or 0)))
        if member is None:
            raise ApiError(400, "Bad Request: chat not found")
        return member

    # --- helpers ----------------------------------------------------------------------------

    def _chat(self, raw: Any) -> dict[str, Any]:
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        text = str(raw)
        if text.startswith("@"):
            chat_id = self.usernames.get(text[1:].lower())
            if chat_id is None:
                raise ApiError(400, "Bad Request: chat not found")
        else:
            try:
                chat_id = int(text)
            except ValueError:
                raise ApiError(400, "Bad Request: chat not found") from None
        if chat_id in self.migrated:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           {"migrate_to_chat_id": self.migrated[chat_id]})
        kind = self.chat_types.get(chat_id)
        if kind is None:
            kind = "private" if chat_id > 0 else "supergroup" if chat_id <= SUPERGROUP_MIN else "group"
        return {"id": chat_id, "type": kind}

    def _parse(self, text: str, parse_mode: Any) -> str:
        if str(parse_mode or "").upper() != "HTML":
            return text
        try:
            return visible_text(text)
        except HtmlError as exc:
            raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from None

    def _message(self, bot: FakeBot, chat: dict[str, Any], req: FakeRequest, **fields: Any) -> dict[str, Any]:
        message = {"message_id": next(self._counter(chat["id"])), "from": bot.user(), "chat": chat,
                   "date": int(time.time()), **fields}
        if "message_thread_id" in req.params:
            message["message_thread_id"] = int(req.params["message_thread_id"])
            message["is_topic_message"] = True
        reply = req.params.get("reply_parameters")
        if isinstance(reply, Mapping):
            message["reply_to_message"] = {"message_id": int(reply["message_id"]), "chat": chat}
        return message

    async def _stop_webhook(self, bot: FakeBot) -> None:
        bot.webhook_url = bot.webhook_secret = None
        task, bot.webhook_task = bot.webhook_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _deliver_webhooks(self, bot: FakeBot) -> None:
        assert self._session is not None
        while True:
            if not bot.pending:
                bot.webhook_changed.clear()
                await bot.webhook_changed.wait()
                continue
            update = bot.pending[0]
            headers = {"X-Telegram-Bot-Api-Secret-Token": bot.webhook_secret} if bot.webhook_secret else {}
            status: int | None
            try:
                async with self._session.post(str(bot.webhook_url), json=update, headers=headers) as resp:
                    status = resp.status
            except aiohttp.ClientError:
                status = None
            self.webhook_deliveries.append((bot.token, update["update_id"], status))
            self._notify()
            if status == 200:
                if bot.pending and bot.pending[0] is update:
                    bot.pending.pop(0)
            else:
                # The real server retries with growing delays; retry on news or after a moment.
                bot.webhook_changed.clear()
                try:
                    async with asyncio.timeout(0.2):
                        await bot.webhook_changed.wait()
                except TimeoutError:
                    pass


def build_message(text: str | None = "hello", *, chat_id: int = 42, chat_type: str = "private", from_id: int = 42,
                  first_name: str = "Alice", username: str | None = "alice", message_id: int = 1,
                  title: str | None = None, **fields: Any) -> dict[str, Any]:
    """A ``Message`` object as the Bot API sends it."""
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = first_name
    else:
        chat["title"] = title or f"Chat {chat_id}"
    sender: dict[str, Any] = {"id": from_id, "is_bot": False, "first_name": first_name}
    if username:
        sender["username"] = username
    message: dict[str, Any] = {"message_id": message_id, "from": sender, "chat": chat, "date": 1764064800}
    if text is not None:
        message["text"] = text
    message.update(fields)
    return message


def mention_entity(text: str, word: str, kind: str = "mention") -> dict[str, Any]:
    """An entity for ``word`` inside ``text`` with UTF-16 offsets, as Telegram computes them."""
    start = text.index(word)
    return {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(word)}


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, FakeFile]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, FakeFile] = {}
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type == "application/x-www-form-urlencoded":
            params.update(await request.post())
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename:
                    files[part.name] = FakeFile(part.filename, part.headers.get("Content-Type", ""),
                                                bytes(await part.read()))
                else:
                    params[part.name] = await part.text()
    for name in _JSON_FIELDS & params.keys():
        if isinstance(params[name], str):
            params[name] = json.loads(params[name])
    return params, files


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _update_type(update: Mapping[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")
