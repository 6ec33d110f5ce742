"""Telegram target syntax (UPSTREAM.md §3.1), with errors that show the accepted formats."""

from __future__ import annotations

import pytest

from gateway.errors import TargetError
from gateway.plugin import Target
from providers.telegram import plugin


@pytest.mark.parametrize(("raw", "expected"), [
    ("42", Target("chat", "42")),
    ("-1001234567890", Target("chat", "-1001234567890")),
    ("  -4242  ", Target("chat", "-4242")),
    ("telegram:42", Target("chat", "42")),
    ("tg:42", Target("chat", "42")),
    ("TG:telegram:group:-5", Target("chat", "-5")),
    ("@gw_channel", Target("chat", "@gw_channel")),
    ("gw_channel", Target("chat", "@gw_channel")),
    ("t.me/gw_channel", Target("chat", "@gw_channel")),
    ("https://t.me/gw_channel/", Target("chat", "@gw_channel")),
    ("http://telegram.me/gw_channel", Target("chat", "@gw_channel")),
    ("-1001234567890:topic:7", Target("chat", "-1001234567890", thread="7")),
    ("-1001234567890:7", Target("chat", "-1001234567890", thread="7")),
    ("tg:@forum_group:topic:12", Target("chat", "@forum_group", thread="12")),
    ("https://t.me/forum_group:topic:3", Target("chat", "@forum_group", thread="3")),
])
def test_accepted_targets(raw, expected):
    assert plugin.outbound.resolve_target(raw, None) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "tg:", "abc", "@ab", "hello world", "12a", "t.me/+invite", "t.me/c/123/45", "-100:topic:x",
    "user:42", "https://example.com/gw_channel",
])
def test_rejected_targets_name_the_accepted_formats(raw):
    with pytest.raises(TargetError, match=r"chat id .*@username.*t\.me/<username>.*:topic:<n>"):
        plugin.outbound.resolve_target(raw, None)
