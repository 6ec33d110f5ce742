"""Telegram provider plugin (Bot API over a thin aiohttp client)."""

from .client import BotInfo, TelegramAPIError, TelegramClient, TelegramError, TelegramNetworkError, open_client
from .config import TelegramAccountConfig
from .inbound import download_media
from .monitor import Backoff, TelegramGateway
from .plugin import plugin
from .targets import parse_target

__all__ = ["Backoff", "BotInfo", "TelegramAPIError", "TelegramAccountConfig", "TelegramClient", "TelegramError",
           "TelegramGateway", "TelegramNetworkError", "download_media", "open_client", "parse_target", "plugin"]
