"""The built-in web chat: a page at ``/chat`` on the control listener, one chat per browser tab."""

from providers.webchat.plugin import plugin

__all__ = ["plugin"]
