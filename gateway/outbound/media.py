"""Outbound media: local paths, ``file://`` and ``http(s)://`` URLs, ``data:`` URIs.

Every item is loaded when the message is accepted, so a missing file, a bad URL or an
oversized upload fails ``deliver()`` before anything is stored. The outbox then stores the
*reference* (:class:`MediaSource`), keeps the loaded bytes in memory for the first send, and
loads the reference again after a restart or a retry; a file that vanished in between
dead-letters the message with a reason that says so. ``data:`` URIs are their own content
and are stored inline.

The MIME type is sniffed from the first bytes (magic numbers), then taken from what the
source declares (``Content-Type``, the ``data:`` type), then from the file name. Downloads
are streamed and stop after ``limit + 1`` bytes.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, unquote_to_bytes, urlparse

import aiohttp
import anyio

from gateway.errors import InvalidRequest, PayloadTooLarge, TransientSendError
from gateway.plugin import AccountConfig, MediaKind, MediaPayload

MB = 1024 * 1024
#: The cap for a kind the provider does not list (the original's document/unknown cap).
DEFAULT_MEDIA_MAX_BYTES = 100 * MB
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15, sock_read=60)
_SNIFF_BYTES = 64
_READ_CHUNK = 64 * 1024
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/unknown"})
_KIND_WORDS = {MediaKind.IMAGE: "images", MediaKind.AUDIO: "audio files", MediaKind.VIDEO: "videos",
               MediaKind.DOCUMENT: "documents"}
#: Zip containers whose real type only the file name tells (docx, xlsx, epub...).
_ZIP_BASED = (".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".jar", ".apk")

SessionFactory = Callable[[], aiohttp.ClientSession]


@dataclass(frozen=True)
class MediaSource:
    """Where one media item comes from: what the outbox stores instead of the bytes."""

    scheme: Literal["path", "url", "data"]
    ref: str  # an absolute path, a URL, or the whole data: URI
    filename: str

    def to_json(self) -> dict[str, str]:
        return {"scheme": self.scheme, "ref": self.ref, "filename": self.filename}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MediaSource:
        return cls(data["scheme"], data["ref"], data["filename"])


@dataclass(frozen=True)
class MediaLimits:
    """Byte caps per kind for one account: min(provider cap, account ``media_max_mb``)."""

    per_kind: Mapping[MediaKind, int]
    where: str  # "telegram/default", named in errors

    def for_kind(self, kind: MediaKind) -> int:
        return self.per_kind[kind]

    @property
    def largest(self) -> int:
        return max(self.per_kind.values())


def media_limits(provider_caps: Mapping[MediaKind, int], account: AccountConfig, where: str) -> MediaLimits:
    account_cap = int(account.media_max_mb * MB) if account.media_max_mb else None
    per_kind = {}
    for kind in MediaKind:
        cap = provider_caps.get(kind, DEFAULT_MEDIA_MAX_BYTES)
        per_kind[kind] = min(cap, account_cap) if account_cap is not None else cap
    return MediaLimits(per_kind, where)


def parse_source(raw: str) -> MediaSource:
    """Classify a media string; relative paths are made absolute (the daemon's directory)."""
    value = raw.strip()
    if not value:
        raise InvalidRequest("a media entry is empty; give a file path, a URL or a data: URI")
    lowered = value[:8].lower()
    if lowered.startswith("data:"):
        return MediaSource("data", value, "")
    if lowered.startswith(("http://", "https://")):
        name = unquote(urlparse(value).path.rsplit("/", 1)[-1])
        return MediaSource("url", value, name)
    if lowered.startswith("file://"):
        parsed = urlparse(value)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidRequest(f"media {value!r}: file:// URLs must name a local file (no host)")
        path = Path(unquote(parsed.path))
    elif (match := _SCHEME.match(value)) is not None:
        raise InvalidRequest(f"media {value!r}: unsupported scheme {match.group(1)!r}; use a file path, "
                             "file://, http(s):// or data:")
    else:
        path = Path(value).expanduser()
    path = Path(os.path.abspath(path))
    return MediaSource("path", str(path), path.name)


async def load_media(source: MediaSource, limits: MediaLimits, session: SessionFactory) -> MediaPayload:
    """Load, sniff and size-check one item. Raises the classified error a caller can show."""
    if source.scheme == "path":
        return await anyio.to_thread.run_sync(_load_file, source, limits)
    if source.scheme == "data":
        return _load_data(source, limits)
    return await _load_url(source, limits, session())


def too_large(name: str, size: int, limits: MediaLimits, kind: MediaKind, *, at_least: bool = False) -> PayloadTooLarge:
    """``photo.jpg is 12.0 MB; the limit for telegram/default images is 10.0 MB``.

    ``at_least``: the download was cut at the limit, so only "more than the limit" is known.
    """
    limit = limits.for_kind(kind)
    if at_least:
        cap = _mb(limit) if limit >= MB else f"{limit:,} bytes"
        shown = f"more than {cap}"
    else:
        shown, cap = _mb(size), _mb(limit)
        if shown == cap:
            shown, cap = f"{size:,} bytes", f"{limit:,} bytes"
    return PayloadTooLarge(f"{name} is {shown}; the limit for {limits.where} {_KIND_WORDS[kind]} is {cap}")


def sniff_mime(head: bytes, filename: str | None = None, declared: str | None = None) -> str:
    """The MIME type from magic bytes, else the declared type, else the file name."""
    sniffed = _magic(head)
    if sniffed == "application/zip" and filename and filename.lower().endswith(_ZIP_BASED):
        sniffed = None
    if sniffed:
        return sniffed
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared not in _GENERIC_TYPES:
        return declared
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return "application/octet-stream"


# --- loaders ------------------------------------------------------------------------------------


def _load_file(source: MediaSource, limits: MediaLimits) -> MediaPayload:
    path = Path(source.ref)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if not path.is_file():
                raise InvalidRequest(f"media {path} is not a regular file")
            head = fh.read(_SNIFF_BYTES)
            mime = sniff_mime(head, path.name)
            kind = MediaKind.from_mime(mime)
            limit = limits.for_kind(kind)
            if size > limit:
                raise too_large(path.name, size, limits, kind)
            data = head + fh.read(limit + 1 - len(head))
    except FileNotFoundError:
        raise InvalidRequest(f"media file {path} does not exist") from None
    except PermissionError:
        raise InvalidRequest(f"media file {path} cannot be read: permission denied") from None
    except IsADirectoryError:
        raise InvalidRequest(f"media {path} is a directory, not a file") from None
    except OSError as exc:
        raise InvalidRequest(f"media file {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:  # the file grew while we read it
        raise too_large(path.name, len(data), limits, kind, at_least=True)
    return MediaPayload(data, mime, source.filename or path.name, kind)


def _load_data(source: MediaSource, limits: MediaLimits) -> MediaPayload:
    header, comma, payload = source.ref[5:].partition(",")
    if not comma:
        raise InvalidRequest("data: URI without a comma; expected data:[<type>][;base64],<data>")
    params = header.split(";")
    declared = params[0].strip() or None
    is_base64 = any(p.strip().lower() == "base64" for p in params[1:])
    estimate = len(payload) * 3 // 4 if is_base64 else len(payload) // 3
    if estimate > limits.largest:
        raise too_large("the data: URI", estimate, limits, MediaKind.DOCUMENT if declared is None
                        else MediaKind.from_mime(declared), at_least=True)
    try:
        data = base64.b64decode(payload, validate=True) if is_base64 else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise InvalidRequest("data: URI is not valid base64") from None
    mime = sniff_mime(data[:_SNIFF_BYTES], None, declared)
    kind = MediaKind.from_mime(mime)
    name = source.filename or _default_name(mime)
    if len(data) > limits.for_kind(kind):
        raise too_large(name, len(data), limits, kind)
    return MediaPayload(data, mime, name, kind)


async def _load_url(source: MediaSource, limits: MediaLimits, session: aiohttp.ClientSession) -> MediaPayload:
    url = source.ref
    try:
        async with session.get(url, timeout=HTTP_TIMEOUT) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise TransientSendError(f"media URL {url} answered HTTP {resp.status}")
            if resp.status >= 400:
                raise InvalidRequest(f"media URL {url} answered HTTP {resp.status}")
            disposition = resp.content_disposition
            name = (disposition.filename if disposition and disposition.filename else None) or source.filename
            head = await _read_up_to(resp.content, _SNIFF_BYTES)
            mime = sniff_mime(head, name, resp.headers.get("Content-Type"))
            kind = MediaKind.from_mime(mime)
            name = name or _default_name(mime)
            limit = limits.for_kind(kind)
            if resp.content_length is not None and resp.content_length > limit:
                raise too_large(name, resp.content_length, limits, kind)
            data = head + await _read_up_to(resp.content, limit + 1 - len(head))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientSendError(f"cannot fetch media {url}: {type(exc).__name__}: {exc}") from None
    if len(data) > limit:
        raise too_large(name, len(data), limits, kind, at_least=True)
    return MediaPayload(data, mime, name, kind)


async def _read_up_to(stream: aiohttp.StreamReader, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = await stream.read(min(_READ_CHUNK, n - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _default_name(mime: str) -> str:
    return "file" + (mimetypes.guess_extension(mime, strict=False) or ".bin")


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


def _magic(head: bytes) -> str | None:  # noqa: PLR0911 - a table of signatures
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "audio/mp4"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        if brand == b"avif":
            return "image/avif"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"BM") and len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "application/x-7z-compressed"
    return None
