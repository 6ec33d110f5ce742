"""Slack provider: Socket Mode inbound, Web API outbound. Exports ``plugin``."""

from .plugin import plugin

__all__ = ["plugin"]
