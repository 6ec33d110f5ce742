"""Markdown to Telegram HTML (``parse_mode=HTML``), and how Telegram counts length.

Telegram's HTML dialect knows a handful of tags (``b i s code pre a blockquote``...) and the
entities ``&lt; &gt; &amp; &quot;``; anything unbalanced makes the whole message fail with
"can't parse entities". So the converter builds tags only in matched pairs: a delimiter that
never finds its partner stays literal text. It is one linear pass per line group.

Supported: fenced code blocks (with language), inline code, ``**bold**``/``__bold__``,
``*italic*``/``_italic_``, ``~~strike~~``, ``[links](https://...)``, ``<autolinks>``,
``# headings`` (bold), ``> quotes``, backslash escapes. Everything else is kept as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.outbound.chunking import utf16_len

__all__ = ["html_to_text", "markdown_to_html", "utf16_len"]

_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^`]*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?(?P<text>.*)$")
_LANGUAGE = re.compile(r"[^A-Za-z0-9_+#.-]")

_PLAIN = re.compile(r"[^\\`\[<*_~&>]+")
_LINK = re.compile(r"\[(?P<label>[^\[\]\n]*)\]\((?P<url>[^\s()<>]+(?:\([^\s()<>]*\)[^\s()<>]*)*)"
                   r"(?:[ \t]+\"[^\"\n]*\")?\)")
_AUTOLINK = re.compile(r"<(?P<url>(?:https?|tg|mailto):[^\s<>]+)>", re.IGNORECASE)
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_ESCAPABLE = frozenset("\\`*_{}[]()#+-.!|~>")
_TAG = re.compile(r"<[^>]*>")

_OPEN = {("*", 1): "<i>", ("_", 1): "<i>", ("*", 2): "<b>", ("_", 2): "<b>", ("~", 2): "<s>"}
_CLOSE = {("*", 1): "</i>", ("_", 1): "</i>", ("*", 2): "</b>", ("_", 2): "</b>", ("~", 2): "</s>"}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def markdown_to_html(markdown: str) -> str:
    """Render chat markdown as Telegram HTML; every source line keeps its line break."""
    lines = markdown.split("\n")
    blocks: list[str] = []
    paragraph: list[str] = []
    quote: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(render_inline("\n".join(paragraph)))
            paragraph.clear()
        if quote:
            blocks.append("<blockquote>" + render_inline("\n".join(quote)) + "</blockquote>")
            quote.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE_OPEN.match(line)
        if fence:
            flush()
            marker = fence.group("fence")
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            body: list[str] = []
            i += 1
            while i < len(lines) and not closing.match(lines[i]):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the text: an unclosed fence runs to the end)
            blocks.append(_code_block("\n".join(body), fence.group("info")))
            continue
        heading = _HEADING.match(line)
        quoted = _QUOTE.match(line)
        if heading:
            flush()
            blocks.append("<b>" + render_inline(heading.group("text")) + "</b>")
        elif quoted:
            if paragraph:
                flush()
            quote.append(quoted.group("text"))
        elif not line.strip():
            flush()
            blocks.append(line)
        else:
            if quote:
                flush()
            paragraph.append(line)
        i += 1
    flush()
    return "\n".join(blocks)


def _code_block(code: str, info: str) -> str:
    language = _LANGUAGE.sub("", info)
    if language:
        return f'<pre><code class="language-{_escape_attr(language)}">{escape(code)}</code></pre>'
    return f"<pre>{escape(code)}</pre>"


@dataclass
class _Opener:
    char: str
    length: int
    index: int  # position of its placeholder in the output list


@dataclass
class _Openers:
    """Unmatched emphasis openers, innermost last, with a count per marker character."""

    stack: list[_Opener] = field(default_factory=list)
    count: dict[str, int] = field(default_factory=lambda: {"*": 0, "_": 0, "~": 0})

    def push(self, opener: _Opener) -> None:
        self.stack.append(opener)
        self.count[opener.char] += 1

    def innermost(self, char: str) -> int | None:
        # Skipped when none exists; the caller truncates at the result, so every opener is
        # passed over at most once and the whole pass stays linear.
        if not self.count[char]:
            return None
        return next(j for j in range(len(self.stack) - 1, -1, -1) if self.stack[j].char == char)

    def truncate(self, k: int) -> None:
        for opener in self.stack[k:]:
            self.count[opener.char] -= 1
        del self.stack[k:]


def render_inline(text: str) -> str:
    """Inline markdown to HTML. Emphasis uses a delimiter stack so tags always nest."""
    out: list[str] = []
    openers = _Openers()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        plain = _PLAIN.match(text, i)
        if plain:
            out.append(plain.group())
            i = plain.end()
            continue
        if c == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            out.append(escape(text[i + 1]))
            i += 2
            continue
        if c == "`":
            i = _code_span(text, i, out)
            continue
        if c == "[":
            link = _LINK.match(text, i)
            if link and link.group("url").lower().startswith(_SAFE_SCHEMES):
                url = link.group("url")
                label = link.group("label") or url
                out.append(f'<a href="{_escape_attr(url)}">{render_inline(label)}</a>')
                i = link.end()
                continue
        elif c == "<":
            auto = _AUTOLINK.match(text, i)
            if auto:
                out.append(escape(auto.group("url")))
                i = auto.end()
                continue
        elif c in "*_~":
            i = _delimiter_run(text, i, out, openers)
            continue
        out.append(escape(c))
        i += 1
    return "".join(out)


def _code_span(text: str, start: int, out: list[str]) -> int:
    end = start
    while end < len(text) and text[end] == "`":
        end += 1
    run = end - start
    search = end
    while True:
        close = text.find("`" * run, search)
        if close < 0:
            out.append("`" * run)
            return end
        after = close + run
        if after < len(text) and text[after] == "`":
            # A longer backtick run does not close this span; skip all of it.
            while after < len(text) and text[after] == "`":
                after += 1
            search = after
            continue
        code = text[end:close]
        if len(code) > 2 and code[0] == " " and code[-1] == " " and code.strip():
            code = code[1:-1]
        if not code:
            out.append("`" * run * 2)
        else:
            out.append("<code>" + escape(code) + "</code>")
        return after


def _delimiter_run(text: str, start: int, out: list[str], openers: _Openers) -> int:
    c = text[start]
    end = start
    while end < len(text) and text[end] == c:
        end += 1
    remaining = end - start
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    can_open = not after.isspace()
    can_close = not before.isspace()
    if c == "_":  # intraword underscores (snake_case) are never emphasis
        can_open = can_open and not before.isalnum()
        can_close = can_close and not after.isalnum()
    if c == "~" and remaining != 2:
        out.append(c * remaining)
        return end

    while can_close and remaining:
        k = openers.innermost(c)
        if k is None:
            break
        opener = openers.stack[k]
        openers.truncate(k)  # settled now; the openers above it stay literal text
        if opener.index == len(out) - 1:
            continue  # nothing in between: the opener stays literal
        length = min(opener.length, remaining)
        # "**a*" closes as "*<i>a</i>": the opener's extra marker stays literal.
        out[opener.index] = c * (opener.length - length) + _OPEN[(c, length)]
        out.append(_CLOSE[(c, length)])
        remaining -= length

    if remaining and can_open and remaining <= 3:
        for length in ((2, 1) if remaining == 3 else (remaining,)):
            out.append(c * length)
            openers.push(_Opener(c, length, len(out) - 1))
    elif remaining:
        out.append(c * remaining)
    return end


def html_to_text(html: str) -> str:
    """The visible text of rendered HTML (for the plain-text fallback)."""
    text = _TAG.sub("", html)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
