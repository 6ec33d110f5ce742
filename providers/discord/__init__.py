"""Discord: a bot account over the gateway websocket and the REST API (own aiohttp client)."""

from .plugin import plugin

__all__ = ["plugin"]
