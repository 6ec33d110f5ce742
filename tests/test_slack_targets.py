"""Slack target strings and thread references."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest, TargetError
from gateway.plugin import Target
from providers.slack.targets import parse_target, thread_ts

TS = "1764064800.000100"


@pytest.mark.parametrize("raw,expected", [
    ("channel:C0123ABCD", Target("channel", "C0123ABCD")),
    ("#C1", Target("channel", "C1")),
    ("C1", Target("channel", "C1")),
    ("G1", Target("channel", "G1")),
    ("D2", Target("channel", "D2")),
    ("user:U2", Target("user", "U2")),
    ("<@U2>", Target("user", "U2")),
    ("<@U2|alice>", Target("user", "U2")),
    ("@U2", Target("user", "U2")),
    ("W2", Target("user", "W2")),
    ("slack:channel:C1", Target("channel", "C1")),
    ("SLACK:#C1", Target("channel", "C1")),
    ("slack:user:U2", Target("user", "U2")),
    ("  channel:C1  ", Target("channel", "C1")),
    (f"channel:C1:thread:{TS}", Target("channel", "C1", thread=TS)),
])
def test_accepted_targets(raw: str, expected: Target) -> None:
    assert parse_target(raw) == expected


@pytest.mark.parametrize("raw", ["", "slack:", "#general", "general", "channel:c1", "user:C1", "channel:U2",
                                 "<@>", "channel:C1:thread:yesterday"])
def test_rejected_targets_show_the_formats(raw: str) -> None:
    with pytest.raises(TargetError, match=r"channel:<id>, #<id>, user:<id> or <@U\.\.\.>"):
        parse_target(raw)


def test_channel_name_gets_a_hint() -> None:
    with pytest.raises(TargetError, match=r"channel id .* not its name"):
        parse_target("#general")


def test_round_trips_through_str() -> None:
    target = Target("channel", "C1", thread=TS)
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("reference", [TS, f"C1:{TS}", f" C1:{TS} "])
def test_thread_ts_from_references(reference: str) -> None:
    assert thread_ts(reference) == TS


def test_thread_ts_rejects_non_ts() -> None:
    with pytest.raises(InvalidRequest):
        thread_ts("C1:abc")
