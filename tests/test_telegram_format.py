"""Markdown to Telegram HTML: what renders, and that the result always parses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.telegram.format import html_to_text, markdown_to_html, utf16_len
from tests.fakes.telegram_api import visible_text


@pytest.mark.parametrize(("markdown", "html"), [
    ("plain text", "plain text"),
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
    ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
    ("***both***", "<b><i>both</i></b>"),
    ("~~gone~~", "<s>gone</s>"),
    ("`x < y`", "<code>x &lt; y</code>"),
    ("``a ` b``", "<code>a ` b</code>"),
    ("[docs](https://example.com/a_(b))", '<a href="https://example.com/a_(b)">docs</a>'),
    ('[q](https://x.test/?a=1&b="2")', '<a href="https://x.test/?a=1&amp;b=&quot;2&quot;">q</a>'),
    ("[**bold link**](https://x.test)", '<a href="https://x.test"><b>bold link</b></a>'),
    ("[bad](javascript:alert(1))", "[bad](javascript:alert(1))"),
    ("<https://x.test/a>", "https://x.test/a"),
    ("# Title", "<b>Title</b>"),
    ("> quoted\n> more", "<blockquote>quoted\nmore</blockquote>"),
    ("```python\nif a < b:\n    pass\n```", '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>'),
    ("```\nno language\n```", "<pre>no language</pre>"),
    ("~~~\ntilde fence\n~~~", "<pre>tilde fence</pre>"),
    ("```js\nunclosed", '<pre><code class="language-js">unclosed</code></pre>'),
    ("snake_case_name and 2*3*4", "snake_case_name and 2<i>3</i>4"),
    ("* list item\n* another", "* list item\n* another"),
    ("**unclosed bold", "**unclosed bold"),
    ("**a _b** c_", "<b>a _b</b> c_"),  # crossing markers: the inner one stays text
    (r"\*not italic\*", "*not italic*"),
    ("line one\n\nline two", "line one\n\nline two"),
    ("before\n```\ncode\n```\nafter", "before\n<pre>code</pre>\nafter"),
])
def test_markdown_renders_as_telegram_html(markdown, html):
    assert markdown_to_html(markdown) == html


def test_utf16_length_counts_astral_characters_twice():
    assert utf16_len("a😀é") == 4


def test_html_to_text_is_the_visible_text():
    html = markdown_to_html("**a** <b> & [c](https://x.test)")
    assert html_to_text(html) == visible_text(html) == "a <b> & c"


_PIECES = st.sampled_from(list("ab *_~`[]()<>&#\\\n:/.h") + ["https://", "```", "😀", "> ", "**", "~~"])
_MARKDOWNISH = st.lists(_PIECES, max_size=120).map("".join)


@settings(max_examples=400, deadline=None)
@given(_MARKDOWNISH)
def test_any_input_renders_html_that_telegram_accepts(markdown):
    html = markdown_to_html(markdown)
    visible_text(html)  # raises HtmlError where Telegram would answer "can't parse entities"
    assert utf16_len(html_to_text(html)) <= utf16_len(html)
