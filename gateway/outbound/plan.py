"""Turn a :class:`DeliveryRequest` into the parts the outbox will send, or refuse it clearly.

Everything that can be checked before sending is checked here, before anything is stored:
provider (aliases), account (default account), target, poll, media and text. The result is
a list of *parts*, each one provider call -- a text chunk, a media item (the first one may
carry the caption) or a native poll -- as JSON-ready dicts that the outbox persists, so a
retry or a restart resumes at the first part not yet delivered, with the same boundaries.

Chunks are measured on what is actually sent: ``measure(render(chunk)) <= limit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import Config, normalize_account_id
from gateway.errors import InvalidRequest, TargetError, UnknownAccount
from gateway.outbound.chunking import chunk_text
from gateway.outbound.media import MediaLimits, MediaSource, SessionFactory, load_media, media_limits, parse_source
from gateway.outbound.model import DeliveryRequest, PollRequest
from gateway.plugin import (
    AccountKey,
    BaseOutbound,
    MediaPayload,
    OutboundAdapter,
    Poll,
    PollSupport,
    ProviderPlugin,
    ResolvedAccount,
    Target,
)
from gateway.registry import Registry

#: Option cap when the provider declares none (the original gateway's 2..12).
DEFAULT_POLL_MAX_OPTIONS = 12
POLL_MAX_DURATION_HOURS = 768  # 32 days, the longest any provider allows

Part = dict[str, Any]


@dataclass(frozen=True)
class Resolved:
    """Where a request goes; cached per (provider, account, target) string by the outbox."""

    key: AccountKey
    plugin: ProviderPlugin
    outbound: OutboundAdapter
    account: ResolvedAccount
    target: Target
    #: ``measure(render(text))`` for this provider.
    measure: Callable[[str], int]
    #: ``str(target)``: the outbox's queue key and the row's ``target`` column.
    target_str: str
    #: Chunk limit (the account's ``text_chunk_limit``, else the provider's), chunker and
    #: line cap, looked up once per resolved target rather than per message.
    text_limit: int
    chunker: str
    max_lines: int | None


def resolve(config: Config, registry: Registry, request: DeliveryRequest,
            default_account: Callable[[str], str | None] | None = None) -> Resolved:
    """Provider (aliases), account (default account) and target, or a clear error."""
    provider = registry.normalize_provider_id(request.provider)
    plugin = registry.get_plugin(provider)
    if plugin.outbound is None:
        raise InvalidRequest(f"provider {provider!r} cannot send messages")
    if request.account is None or not str(request.account).strip():
        account_id = (default_account or config.default_account)(provider)
        if account_id is None:
            raise UnknownAccount(f"provider {provider!r} has no accounts configured; "
                                 f"add a [providers.{provider}] table to the config")
    else:
        account_id = normalize_account_id(request.account)
    key = AccountKey(provider, account_id)
    account = config.accounts.get(key)
    if account is None:
        known = ", ".join(a.account_id for a in config.accounts_of(provider)) or "(none)"
        raise UnknownAccount(f"unknown account {request.account!r} for provider {provider!r}; "
                             f"configured accounts: {known}")
    key = account.key  # the configuration's own key: dict lookups elsewhere match it by identity
    raw_target = (request.to or "").strip()
    try:
        target = plugin.outbound.resolve_target(raw_target, account.config)
    except TargetError:
        raise
    except (ValueError, LookupError) as exc:
        raise TargetError(f"{provider} target {raw_target!r} is not valid: {exc}") from None
    outbound = plugin.outbound
    return Resolved(key, plugin, outbound, account, target, sent_length(outbound), str(target),
                    account.config.text_chunk_limit or outbound.text_chunk_limit, outbound.chunker,
                    getattr(outbound, "chunk_max_lines", None))


def plan_delivery(resolved: Resolved, request: DeliveryRequest) -> list[Part]:
    """Validate a text or poll ``request`` for ``resolved``; its parts, in order.

    Where the message goes is ``resolved``; reply-to and thread are the request's.
    """
    if request.media:
        raise ValueError("a request with media needs plan_media_delivery()")
    text = request.text or ""
    has_text = _check_text(text, request)
    parts = [{"text": chunk} for chunk in _split(resolved, text)] if has_text else []
    if request.poll is not None:
        poll = normalize_poll(request.poll, resolved.outbound.poll_max_options)
        if sends_native_poll(resolved.plugin):
            parts.append({"poll": poll_to_json(poll)})
        else:
            parts.extend({"text": chunk} for chunk in _split(resolved, poll_text(poll)))
    return parts


async def plan_media_delivery(resolved: Resolved, request: DeliveryRequest,
                              session: SessionFactory) -> tuple[list[Part], dict[int, MediaPayload]]:
    """Like :func:`plan_delivery` for a request with media: loads and checks every item.

    Returns the parts and the media loaded, by part index (sent without loading again).
    """
    if request.poll is not None:
        raise InvalidRequest("a poll cannot carry media; send the media as a separate message")
    if not resolved.plugin.capabilities.media:
        raise InvalidRequest(f"provider {resolved.key.provider!r} cannot send media")
    text = request.text or ""
    has_text = _check_text(text, request)
    media: dict[int, MediaPayload] = {}
    parts: list[Part] = []
    outbound, account = resolved.outbound, resolved.account.config
    limits = media_limits(outbound.media_max_bytes, account, str(resolved.key))
    sources = [parse_source(raw) for raw in request.media]
    payloads = [await load_media(source, limits, session) for source in sources]
    caption: str | None = None
    if has_text:
        limit = outbound.caption_limit or account.text_chunk_limit or outbound.text_chunk_limit
        max_lines = getattr(outbound, "chunk_max_lines", None)
        fits = len(text) <= 4 * limit and resolved.measure(text) <= limit
        if fits and (max_lines is None or text.count("\n") < max_lines):
            caption = text
        else:  # too long for a caption: its own message(s) first
            parts.extend({"text": chunk} for chunk in _split(resolved, text))
    for n, (source, payload) in enumerate(zip(sources, payloads, strict=True)):
        media[len(parts)] = payload
        parts.append({"media": media_to_json(source, payload), "caption": caption if n == 0 else None})
    return parts, media


def _check_text(text: str, request: DeliveryRequest) -> bool:
    """Whether there is text to send; refuses a request with nothing to send or invalid Unicode."""
    has_text = bool(text) and not text.isspace()
    if not has_text and not request.media and request.poll is None:
        raise InvalidRequest("nothing to send: the text is empty and there is no media or poll")
    if has_text:
        _check_unicode(text, "text")
    return has_text


def _check_unicode(value: str, what: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(f"{what} is not valid Unicode: an unpaired surrogate at character {exc.start}") from None


def _split(resolved: Resolved, text: str) -> list[str]:
    return split_text(text, resolved.text_limit, resolved.chunker, resolved.measure, resolved.max_lines)


def split_text(text: str, limit: int, kind: str, measure: Callable[[str], int],
               max_lines: int | None) -> list[str]:
    if kind == "none":
        return [text]
    if (max_lines is None or text.count("\n") < max_lines) and len(text) <= 4 * limit and measure(text) <= limit:
        return [text]  # the common case: one short message, no chunker pass
    return chunk_text(text, limit, kind, measure=measure, max_lines=max_lines)  # type: ignore[arg-type]


def sent_length(outbound: OutboundAdapter) -> Callable[[str], int]:
    """``measure(render(text))``: the length of what the provider actually receives."""
    cls = type(outbound)
    render = getattr(outbound, "render", None)
    measure = getattr(outbound, "measure", None) or len
    plain_render = render is None or getattr(cls, "render", None) is BaseOutbound.render
    if plain_render and getattr(cls, "measure", None) in (None, BaseOutbound.measure):
        return len
    if plain_render:
        return measure
    assert render is not None
    return lambda text: measure(render(text))


# --- polls ------------------------------------------------------------------------------------


def normalize_poll(poll: PollRequest, max_options: int | None) -> Poll:
    """Trimmed question and options, checked against the provider's limits."""
    question = (poll.question or "").strip()
    if not question:
        raise InvalidRequest("poll question is required")
    _check_unicode(question, "poll question")
    options: list[str] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(poll.options, start=1):
        option = str(raw).strip()
        if not option:
            raise InvalidRequest(f"poll option {n} is empty")
        _check_unicode(option, f"poll option {n}")
        folded = option.casefold()
        if folded in seen:
            raise InvalidRequest(f"poll options must be unique: option {n} ({option!r}) repeats option {seen[folded]}")
        seen[folded] = n
        options.append(option)
    cap = max_options or DEFAULT_POLL_MAX_OPTIONS
    if len(options) < 2:
        raise InvalidRequest(f"a poll needs at least 2 options, got {len(options)}")
    if len(options) > cap:
        raise InvalidRequest(f"this provider's polls take at most {cap} options, got {len(options)}")
    max_selections = poll.max_selections
    if isinstance(max_selections, bool) or not isinstance(max_selections, int) \
            or not 1 <= max_selections <= len(options):
        raise InvalidRequest(f"max_selections must be between 1 and the number of options ({len(options)}), "
                             f"got {max_selections!r}")
    hours = poll.duration_hours
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int)
                              or not 1 <= hours <= POLL_MAX_DURATION_HOURS):
        raise InvalidRequest(f"duration_hours must be a whole number from 1 to {POLL_MAX_DURATION_HOURS}, "
                             f"got {hours!r}")
    return Poll(question, tuple(options), max_selections, hours)


def sends_native_poll(plugin: ProviderPlugin) -> bool:
    """Native API, or a plugin that emulates polls itself; else the core's text emulation."""
    support = plugin.capabilities.polls
    if support == PollSupport.NATIVE:
        return True
    if support == PollSupport.EMULATED and plugin.outbound is not None:
        method = getattr(type(plugin.outbound), "send_poll", None)
        return method is not None and method is not BaseOutbound.send_poll
    return False


def poll_text(poll: Poll) -> str:
    """The documented text emulation of a poll (docs/outbound.md)."""
    lines = [f"📊 {poll.question}", *(f"{n}. {option}" for n, option in enumerate(poll.options, start=1))]
    if poll.max_selections > 1:
        lines.append(f"Reply with up to {poll.max_selections} numbers, separated by commas")
    else:
        lines.append("Reply with a number")
    if poll.duration_hours is not None:
        lines.append(f"(open for {poll.duration_hours} h)")
    return "\n".join(lines)


def poll_to_json(poll: Poll) -> dict[str, Any]:
    return {"question": poll.question, "options": list(poll.options), "max_selections": poll.max_selections,
            "duration_hours": poll.duration_hours}


def poll_from_json(data: dict[str, Any]) -> Poll:
    return Poll(data["question"], tuple(data["options"]), data["max_selections"], data["duration_hours"])


# --- media parts --------------------------------------------------------------------------------


def media_to_json(source: MediaSource, payload: MediaPayload) -> dict[str, Any]:
    return {**source.to_json(), "filename": payload.filename, "mime": payload.mime, "size": len(payload.data)}


def account_media_limits(plugin: ProviderPlugin, account: ResolvedAccount) -> MediaLimits:
    assert plugin.outbound is not None
    return media_limits(plugin.outbound.media_max_bytes, account.config, str(account.key))
