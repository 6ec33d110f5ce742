"""Markdown (what handlers write) to Slack mrkdwn (what ``chat.postMessage`` renders).

Line-oriented on purpose: the core has already chunked the markdown, and a line scanner keeps
the layout exactly (blank lines, indentation) where a full parse-and-reprint would not.

* ``**b**``/``__b__`` -> ``*b*``; ``*i*``/``_i_`` -> ``_i_``; ``***bi***`` -> ``*_bi_*``;
  ``~~s~~`` -> ``~s~``; ``[t](url)`` -> ``<url|t>``; ``<https://x>`` stays a link;
* headings become bold lines, ``-``/``*``/``+`` bullets become ``•``, ``>`` quotes stay quotes;
* code spans and fences are kept verbatim apart from escaping (a fence's language is dropped:
  Slack would show it as the first code line);
* ``&``, ``<``, ``>`` are escaped everywhere else -- except Slack's own tokens (``<@U123>``,
  ``<#C123>``, ``<!here>``), which pass through so handlers can mention people.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Private-use characters never appear in chat text we care about; they mark spans that the
# emphasis and escaping passes must leave alone.
_KEEP_OPEN, _KEEP_CLOSE = "\ue000", "\ue001"
_BOLD, _ITALIC, _STRIKE = "\ue002", "\ue003", "\ue004"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ ]?(.*)$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?:\[([ xX])\][ \t]+)?(.*)$")

_URL = r"(?:[^()\s<>]|\([^()\s<>]*\))+"
_TOKENS = re.compile(
    r"(?P<escape>\\[\\`*_{}\[\]()#+\-.!~|<>&])"
    r"|(?P<code>(?P<ticks>`+)(?P<code_body>.+?)(?P=ticks))"
    r"|(?P<slack><(?:@[UWB][A-Z0-9]+|#[CG][A-Z0-9]+|![a-z]+(?:\^[^>|\s]*)?)(?:\|[^>]*)?>)"
    r"|(?P<autolink><(?P<auto_url>(?:https?://|mailto:)[^>\s]+)>)"
    rf"|(?P<link>!?\[(?P<label>[^\]]*)\]\((?P<url>{_URL})(?:[ \t]+\"[^\"]*\")?\))"
    r"|(?P<bare>https?://[^\s<>]+)"
)
_EMPHASIS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*"), _BOLD + _ITALIC + r"\1" + _ITALIC + _BOLD),
    (re.compile(r"(?<!\w)___(?=\S)(.+?)(?<=\S)___(?!\w)"), _BOLD + _ITALIC + r"\1" + _ITALIC + _BOLD),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), _BOLD + r"\1" + _BOLD),
    (re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"), _BOLD + r"\1" + _BOLD),
    (re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"), _ITALIC + r"\1" + _ITALIC),
    (re.compile(r"(?<!\w)_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)"), _ITALIC + r"\1" + _ITALIC),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), _STRIKE + r"\1" + _STRIKE),
)
_KEPT = re.compile(_KEEP_OPEN + r"(\d+)" + _KEEP_CLOSE)


def escape(text: str) -> str:
    """Escape Slack's three control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert one markdown chunk to mrkdwn."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence[0]) and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                out.append("```")
                fence = None
            else:
                out.append(escape(line))
            continue
        opening = _FENCE.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            fence = opening.group(1)
            out.append("```")
            continue
        out.append(_line(line))
    if fence is not None:
        out.append("```")  # a chunk that ends inside a fence still renders as code
    return "\n".join(out)


def _line(line: str) -> str:
    if _RULE.match(line):
        return line
    if match := _QUOTE.match(line):
        return "> " + _line(match.group(1)) if match.group(1) else ">"
    if match := _HEADING.match(line):
        return f"*{_inline(match.group(1), bold=False)}*" if match.group(1) else ""
    if match := _BULLET.match(line):
        indent, task, rest = match.groups()
        box = "" if task is None else ("☐ " if task == " " else "☑ ")
        return f"{indent}• {box}{_inline(rest)}"
    return _inline(line)


def _inline(text: str, *, bold: bool = True) -> str:
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"{_KEEP_OPEN}{len(kept) - 1}{_KEEP_CLOSE}"

    text = _TOKENS.sub(_token_replacer(keep), text)
    for pattern, replacement in _EMPHASIS:
        text = pattern.sub(replacement, text)
    text = escape(text)
    text = text.replace(_BOLD, "*" if bold else "").replace(_ITALIC, "_").replace(_STRIKE, "~")
    return _KEPT.sub(lambda m: kept[int(m.group(1))], text)


def _token_replacer(keep: Callable[[str], str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "escape":
            return keep(escape(match.group("escape")[1]))
        if kind == "code":
            body = match.group("code_body")
            if len(body) > 2 and body[0] == body[-1] == " " and body.strip():
                body = body[1:-1]
            return keep("`" + escape(body) + "`")
        if kind == "slack":
            return keep(match.group("slack"))
        if kind == "autolink":
            return keep("<" + _link_url(match.group("auto_url")) + ">")
        if kind == "link":
            url, label = _link_url(match.group("url")), match.group("label").strip()
            if not label or label == match.group("url"):
                return keep(f"<{url}>")
            return keep(f"<{url}|{escape(label)}>")
        return keep(escape(match.group("bare")))

    return replace


def _link_url(url: str) -> str:
    # Inside <...> a raw '|' or '>' would end the URL early.
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
