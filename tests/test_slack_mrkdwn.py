"""Markdown -> Slack mrkdwn: the conversion table."""

from __future__ import annotations

import pytest

from providers.slack.mrkdwn import to_mrkdwn

CASES = [
    # emphasis
    ("**bold**", "*bold*"),
    ("__bold__", "*bold*"),
    ("*italic* and _italic_", "_italic_ and _italic_"),
    ("***both***", "*_both_*"),
    ("~~strike~~", "~strike~"),
    ("snake_case_name stays, 2*3*4 stays", "snake_case_name stays, 2*3*4 stays"),
    ("\\*literal\\* and \\_x\\_", "*literal* and _x_"),
    # links
    ("[docs](https://example.com)", "<https://example.com|docs>"),
    ("[q](https://x.io/?a=1&b=2)", "<https://x.io/?a=1&amp;b=2|q>"),
    ("[A & B](https://x.io)", "<https://x.io|A &amp; B>"),
    ("[wiki](https://en.wikipedia.org/wiki/Foo_(bar)) end", "<https://en.wikipedia.org/wiki/Foo_(bar)|wiki> end"),
    ("<https://example.com>", "<https://example.com>"),
    ("![chart](https://x.io/c.png)", "<https://x.io/c.png|chart>"),
    ("bare https://x.io/a_b_c_ link", "bare https://x.io/a_b_c_ link"),
    # escaping
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("<b>html</b>", "&lt;b&gt;html&lt;/b&gt;"),
    # Slack's own tokens pass through
    ("<@U123> and <@U123|bob>, <#C42|general>, <!here>", "<@U123> and <@U123|bob>, <#C42|general>, <!here>"),
    # code is preserved (only escaped)
    ("`**not bold** <x>`", "`**not bold** &lt;x&gt;`"),
    ("```python\nif a < b and **c**:\n    pass\n```", "```\nif a &lt; b and **c**:\n    pass\n```"),
    ("~~~\n_x_\n~~~", "```\n_x_\n```"),
    ("```\nunclosed", "```\nunclosed\n```"),
    # blocks
    ("# Title", "*Title*"),
    ("## A **bold** heading ##", "*A bold heading*"),
    ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
    ("- [ ] todo\n- [x] done", "• ☐ todo\n• ☑ done"),
    ("1. first\n2. second", "1. first\n2. second"),
    ("> quoted **text**", "> quoted *text*"),
    ("---", "---"),
    ("para one\n\npara two", "para one\n\npara two"),
]


@pytest.mark.parametrize("markdown,expected", CASES, ids=[c[0][:30] for c in CASES])
def test_markdown_to_mrkdwn(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_plain_text_is_unchanged() -> None:
    text = "Nothing special here: just words, numbers 1.5 and a question?"
    assert to_mrkdwn(text) == text
