"""Specification of the outbound text chunkers (gateway.outbound.chunking)."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable

import pytest
import regex
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.outbound.chunking import chunk_markdown, chunk_plain, chunk_text, utf16_len

Measure = Callable[[str], int]

FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.M)


# -- what "correct" means, written independently of the implementation -----------------


def fences_balanced(chunk: str) -> bool:
    """A fence opens on a fence line and closes on one of the same char, at least as long."""
    opened: str | None = None
    for line in chunk.split("\n"):
        m = FENCE_LINE.match(line)
        if m is None:
            continue
        marker = m.group(1)
        if opened is None:
            opened = marker
        elif marker[0] == opened[0] and len(marker) >= len(opened):
            opened = None
    return opened is None


def only_fence_lines(chunk: str) -> bool:
    return all(FENCE_LINE.match(line) or not line.strip() for line in chunk.split("\n"))


def boundaries(text: str) -> set[int]:
    """Grapheme cluster boundaries (UAX #29 extended clusters)."""
    return {0} | {m.end() for m in regex.finditer(r"\X", text)}


def longest_cluster(text: str, measure: Measure) -> int:
    return max((measure(m.group()) for m in regex.finditer(r"\X", text)), default=0)


def locate(text: str, chunks: list[str], markdown: bool) -> list[tuple[int, int]]:
    """Where each chunk's own text sits in the original, in order.

    Between chunks only whitespace may be dropped; a markdown chunk may additionally start
    with a reopened fence line and end with an added closing fence line (which can stand in
    for the original closing line). Fails the test if no such alignment exists.
    """
    if chunks == [text]:
        return [(0, len(text))]

    def bodies(chunk: str) -> list[str]:
        out = [chunk]
        if not markdown:
            return out
        lines = chunk.split("\n")
        lead = len(lines) > 1 and FENCE_LINE.match(lines[0]) is not None
        trail = len(lines) > 1 and FENCE_LINE.match(lines[-1]) is not None
        if lead:
            out.append("\n".join(lines[1:]))
        # an added closing line follows the body's own final newline, if it had one
        if trail:
            out += ["\n".join(lines[:-1]) + "\n", "\n".join(lines[:-1])]
        if lead and trail and len(lines) > 2:
            out += ["\n".join(lines[1:-1]) + "\n", "\n".join(lines[1:-1])]
        return out

    def gap_ok(gap: str) -> bool:
        if not gap.strip():
            return True
        rest = [line for line in gap.split("\n") if line.strip()]
        return markdown and len(rest) == 1 and FENCE_LINE.match(rest[0].lstrip(" ")) is not None

    @functools.lru_cache(maxsize=None)
    def align(k: int, cursor: int) -> tuple[tuple[int, int], ...] | None:
        if k == len(chunks):
            return () if gap_ok(text[cursor:]) else None
        for body in bodies(chunks[k]):
            lead = len(body) - len(body.lstrip())
            start = cursor
            while start < len(text) and text[start].isspace():
                start += 1
            starts = {start - lead} if body.strip() else set()
            line_start, line_end = text.rfind("\n", 0, start) + 1, text.find("\n", start)
            if markdown and body.strip() and FENCE_LINE.match(text, line_start) and line_end > 0:
                # the original closing line may have been replaced by an added one
                after = len(text[line_end:]) - len(text[line_end:].lstrip())
                starts.add(line_end + after - lead)
            for p in sorted(starts):
                if p >= cursor and text.startswith(body, p) and gap_ok(text[cursor:p]):
                    rest = align(k + 1, p + len(body))
                    if rest is not None:
                        return ((p, p + len(body)), *rest)
        return None

    found = align(0, 0)
    assert found is not None, f"chunks do not reassemble the text: {chunks!r}"
    return list(found)


def check_chunks(text: str, chunks: list[str], limit: int, measure: Measure,
                 markdown: bool) -> list[tuple[int, int]]:
    if chunks != [text]:  # a text that fits comes back as it is, even blank
        assert all(chunk.strip() for chunk in chunks), "no empty or whitespace-only chunk"
    assert all(measure(chunk) <= limit for chunk in chunks), [measure(c) for c in chunks]
    return locate(text, chunks, markdown)


# -- generators ------------------------------------------------------------------------

CLUSTERS = [
    "e\u0301",  # combining acute
    "\U0001F44D\U0001F3FD",  # thumbs up, skin tone
    "\U0001F1E9\U0001F1EA",  # flag DE (regional indicator pair)
    "\U0001F468\u200d\U0001F469\u200d\U0001F467",  # family ZWJ sequence
    "\u2764\ufe0f",  # heart + variation selector
    "\r\n",
    "\U0001F600",
    "\u4e2d\u6587",  # CJK
    "\u0915\u094d\u0937",  # Devanagari conjunct
    "\u1100\u1161\u11a8",  # Hangul jamo L V T
    "\u0600",  # prepended concatenation mark: binds to what follows, even a space
]
WORDS = ["alpha", "beta", "(gamma", "delta)", "x", "longerword", "a(b)c", "(", ")"]
TOKENS = WORDS + CLUSTERS + [" ", " ", "\n", "\n\n", "\t", "  ", "\r", "\u00a0"]
FENCE_TOKENS = ["\n```", "\n```py\n", "\n~~~\n", "\n````\n", "\n   ~~~~ x\n", "```"]

token_text = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=120).map("".join)
fenced_text = st.lists(st.sampled_from(TOKENS + FENCE_TOKENS * 3), min_size=1,
                       max_size=150).map("".join)
any_text = st.one_of(token_text, fenced_text, st.text(min_size=1, max_size=300))
measures = st.sampled_from([len, utf16_len])


@st.composite
def markdown_documents(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["para", "list", "fence"]))
        words = st.lists(st.sampled_from(WORDS + CLUSTERS[:5] + ["\U0001F600"]), min_size=1,
                         max_size=25).map(" ".join)
        if kind == "para":
            blocks.append(draw(words))
        elif kind == "list":
            items = draw(st.lists(words, min_size=1, max_size=4))
            blocks.append("\n".join("- " + item for item in items))
        else:
            indent = draw(st.sampled_from(["", "", " ", "   "]))
            marker = draw(st.sampled_from(["```", "~~~", "````", "~~~~~"]))
            info = draw(st.sampled_from(["", "py", "js title"]))
            code = draw(st.lists(st.sampled_from(["x = f(1)", "    return x", "\U0001F600 ok",
                                                  "if (a) {", "}", "e\u0301\u0301"]),
                                 min_size=1, max_size=15))
            blocks.append(f"{indent}{marker}{info}\n" + "\n".join(code) + f"\n{indent}{marker}")
    if kind == "fence" and draw(st.booleans()):  # the last fence may be left unclosed
        blocks[-1] = blocks[-1].rsplit("\n", 1)[0]
    return "\n\n".join(blocks)


# -- properties ------------------------------------------------------------------------

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(any_text, st.integers(1, 120), measures)
def test_plain_chunks_fit_and_reassemble_to_the_text(text: str, limit: int,
                                                     measure: Measure) -> None:
    assume(longest_cluster(text, measure) <= limit)
    check_chunks(text, chunk_plain(text, limit, measure=measure), limit, measure, markdown=False)


@PROPERTIES
@given(any_text, st.integers(1, 120), measures)
def test_markdown_chunks_fit_and_reassemble_to_the_text(text: str, limit: int,
                                                        measure: Measure) -> None:
    assume(longest_cluster(text, measure) <= limit)
    check_chunks(text, chunk_markdown(text, limit, measure=measure), limit, measure, markdown=True)


@PROPERTIES
@given(any_text, st.integers(1, 120), measures, st.booleans())
def test_chunks_never_split_a_grapheme_cluster(text: str, limit: int, measure: Measure,
                                               markdown: bool) -> None:
    assume(longest_cluster(text, measure) <= limit // 2)
    chunker = chunk_markdown if markdown else chunk_plain
    chunks = chunker(text, limit, measure=measure)
    edges = boundaries(text)
    for start, end in check_chunks(text, chunks, limit, measure, markdown):
        assert start in edges and end in edges, (text[start:end], chunks)


@PROPERTIES
@given(markdown_documents(), st.integers(40, 400), measures)
def test_markdown_keeps_every_fence_balanced(text: str, limit: int, measure: Measure) -> None:
    chunks = chunk_markdown(text, limit, measure=measure)
    check_chunks(text, chunks, limit, measure, markdown=True)
    unclosed_input = not fences_balanced(text)
    for k, chunk in enumerate(chunks):
        is_last = k == len(chunks) - 1
        assert fences_balanced(chunk) or (is_last and unclosed_input), chunk
        assert not only_fence_lines(chunk), chunk


@PROPERTIES
@given(markdown_documents(), st.integers(40, 400), st.integers(3, 20))
def test_markdown_respects_max_lines(text: str, limit: int, max_lines: int) -> None:
    chunks = chunk_markdown(text, limit, max_lines=max_lines)
    check_chunks(text, chunks, limit, len, markdown=True)
    assert all(chunk.count("\n") < max_lines for chunk in chunks)


@PROPERTIES
@given(any_text, st.integers(8, 120))
def test_any_measure_is_respected_even_when_not_additive(text: str, limit: int) -> None:
    def escaped(s: str) -> int:  # like a provider that counts its rendered HTML
        return len(html.escape(s).encode())

    assume(longest_cluster(text, escaped) <= limit)
    for chunker in (chunk_plain, chunk_markdown):
        assert all(escaped(c) <= limit for c in chunker(text, limit, measure=escaped))


# -- plain chunker examples ------------------------------------------------------------


def test_empty_text_gives_no_chunks() -> None:
    assert chunk_plain("", 10) == []
    assert chunk_markdown("", 10) == []


def test_text_that_fits_is_returned_unchanged() -> None:
    text = "Line one\n\nLine two\n\n  "
    assert chunk_plain(text, 1600) == [text]
    assert chunk_markdown(text, 1600) == [text]


def test_hard_breaks_text_without_whitespace_at_the_limit() -> None:
    assert chunk_plain("a" * 100, 60) == ["a" * 60, "a" * 40]
    assert chunk_plain("Supercalifragilisticexpialidocious", 10) == [
        "Supercalif", "ragilistic", "expialidoc", "ious"]


def test_prefers_the_last_newline_over_later_whitespace() -> None:
    text = "paragraph one line\n\nparagraph two starts here and continues"
    assert chunk_plain(text, 40) == [
        "paragraph one line", "paragraph two starts here and continues"]


def test_breaks_at_the_last_whitespace_when_no_newline_fits() -> None:
    assert chunk_plain("the quick brown fox jumps", 16) == ["the quick brown", "fox jumps"]


def test_drops_the_separator_and_trims_chunks() -> None:
    assert chunk_plain("alpha beta   ", 8) == ["alpha", "beta"]
    assert chunk_plain("alpha   \n\n   beta gamma", 10) == ["alpha", "beta gamma"]


def test_keeps_a_parenthetical_phrase_together() -> None:
    text = "Heads up now (Though now I'm curious)ok"
    assert chunk_plain(text, 35) == ["Heads up now", "(Though now I'm curious)ok"]


def test_keeps_nested_parentheses_together() -> None:
    assert chunk_plain("Hello (outer (inner) end) world", 26) == [
        "Hello (outer (inner) end)", "world"]


def test_unmatched_closing_parenthesis_does_not_block_breaks() -> None:
    assert chunk_plain("Hello) world (ok) more", 12) == ["Hello) world", "(ok) more"]


def test_a_parenthesis_that_never_closes_does_not_block_breaks() -> None:
    text = "I am sad :( because the build broke again today"
    assert chunk_plain(text, 20) == ["I am sad :( because", "the build broke", "again today"]


def test_breaks_inside_parentheses_rather_than_inside_a_word() -> None:
    text = "(" + " ".join(["word"] * 10) + ")"
    chunks = chunk_plain(text, 20)
    assert chunks == ["(word word word word", "word word word word", "word word)"]


def test_hard_breaks_a_parenthetical_without_whitespace() -> None:
    text = "(" + "a" * 80 + ")"
    chunks = chunk_markdown(text, 20)
    assert len(chunks[0]) == 20 and "".join(chunks) == text


# -- markdown chunker examples ---------------------------------------------------------


@pytest.mark.parametrize(("opener", "closer"), [
    ("```txt", "```"),
    ("~~~sh", "~~~"),
    ("````md", "````"),
    ("  ```js", "  ```"),
])
def test_reopened_chunks_start_with_the_original_opener(opener: str, closer: str) -> None:
    text = f"{opener}\n" + "\n".join(f"value = {i}" for i in range(60)) + f"\n{closer}"
    chunks = chunk_markdown(text, 120)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= 120
        assert chunk.startswith(opener + "\n")
        assert chunk.endswith("\n" + closer)
        assert fences_balanced(chunk)


def test_a_fence_without_newlines_is_cut_hard_and_keeps_its_spaces() -> None:
    body = "abc def ghi jkl mno"
    chunks = chunk_markdown(f"```txt\n{body}\n```", 14)
    assert all(len(c) <= 14 and fences_balanced(c) for c in chunks)
    assert "".join(c[len("```txt\n"):-len("\n```")] for c in chunks) == body


def test_keeps_a_fenced_block_whole_when_a_break_outside_it_exists() -> None:
    fence = "```bash\nline1\nline2\n```"
    chunks = chunk_markdown(f"{'p' * 60}\n\n{fence}\n\n{'s' * 60}", 40)
    assert fence in chunks


def test_splits_inside_a_fence_at_a_line_break() -> None:
    text = "```py\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    for chunk in chunk_markdown(text, 60):
        lines = chunk.split("\n")
        assert lines[0] == "```py" and lines[-1] == "```"
        assert all(re.fullmatch(r"x\d+ = \d+", line) for line in lines[1:-1])


def test_unclosed_fence_at_the_end_is_reopened_and_left_open() -> None:
    text = "intro\n\n~~~~\n" + "\n".join(["code line"] * 30)
    chunks = chunk_markdown(text, 100)
    assert chunks[0] == "intro"
    assert all(c.startswith("~~~~\n") for c in chunks[1:])
    assert all(c.endswith("\n~~~~") for c in chunks[1:-1])
    assert not chunks[-1].endswith("~~~~")


def test_an_opener_longer_than_the_limit_reopens_with_the_bare_marker() -> None:
    chunks = chunk_markdown("```" + "A" * 4200 + "\n```", 2000)
    assert all(len(c) <= 2000 and fences_balanced(c) for c in chunks)
    assert all(c.startswith("```\n") for c in chunks[1:])


def test_ten_thousand_character_message_splits_in_order_within_4096() -> None:
    parts = []
    for i in range(30):
        parts.append(f"Paragraph {i} talks about things (with an aside) and more words here.")
        if i % 10 == 0:
            parts.append("```python\n" + "\n".join(f"print({i}, {j})" for j in range(25)) + "\n```")
        if i == 15:  # longer than one message: must be split inside
            parts.append("~~~~js\n" + "\n".join(f"  log({j});" for j in range(600)) + "\n~~~~")
    text = "\n\n".join(parts)
    assert 10_000 <= len(text) <= 12_000
    chunks = chunk_markdown(text, 4096)
    assert len(chunks) >= 3
    spans = check_chunks(text, chunks, 4096, len, markdown=True)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    assert all(fences_balanced(c) for c in chunks)
    assert any(c.startswith("~~~~js\n  log(") for c in chunks)


def test_max_lines_splits_long_messages_at_line_breaks() -> None:
    text = "\n".join(f"line {i}" for i in range(40))
    chunks = chunk_markdown(text, 2000, max_lines=17)
    assert [c.count("\n") + 1 for c in chunks] == [17, 17, 6]


def test_max_lines_counts_the_added_fence_lines() -> None:
    text = "```\n" + "\n".join(f"code {i}" for i in range(40)) + "\n```"
    chunks = chunk_markdown(text, 2000, max_lines=17)
    assert all(c.count("\n") + 1 <= 17 and fences_balanced(c) for c in chunks)
    assert len(chunks) == 3


# -- measuring like the provider -------------------------------------------------------


def test_utf16_len_counts_astral_characters_as_two_units() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("é中") == 2
    assert utf16_len("\U0001F600") == 2
    assert utf16_len("\U0001F468\u200d\U0001F469") == 5


def test_never_splits_a_surrogate_pair_at_a_hard_break() -> None:
    chunks = chunk_plain("\U0001F600" * 30, 11, measure=utf16_len)
    assert chunks[0] == "\U0001F600" * 5
    assert "".join(chunks) == "\U0001F600" * 30
    assert all(utf16_len(c) <= 11 for c in chunks)


@pytest.mark.parametrize("cluster", [
    "\U0001F468\u200d\U0001F469\u200d\U0001F467",  # ZWJ sequence
    "\U0001F1E9\U0001F1EA",  # flag
    "\U0001F44D\U0001F3FD",  # skin tone
    "a\u0301\u0302",  # combining marks
    "\u2764\ufe0f",  # variation selector
])
def test_hard_breaks_keep_grapheme_clusters_whole(cluster: str) -> None:
    text = cluster * 40
    for measure in (len, utf16_len):
        chunks = chunk_plain(text, 16, measure=measure)
        assert "".join(chunks) == text
        assert all(regex.fullmatch(rf"(?:{re.escape(cluster)})+", c) for c in chunks)


def test_does_not_split_crlf() -> None:
    chunks = chunk_markdown("ab\r\ncd\r\nef", 5)
    assert chunks == ["ab", "cd", "ef"]


def test_a_space_carrying_a_combining_mark_is_not_a_break() -> None:
    text = "aaaa \u0301bbb cc"
    assert chunk_plain(text, 10) == ["aaaa \u0301bbb", "cc"]


def test_a_cluster_longer_than_the_limit_is_split_as_a_last_resort() -> None:
    text = "a" + "\u0301" * 30
    chunks = chunk_plain(text, 10)
    assert "".join(chunks) == text and all(len(c) <= 10 for c in chunks)


def test_measure_is_applied_to_windows_not_to_the_whole_text() -> None:
    seen: list[int] = []

    def counting(s: str) -> int:
        seen.append(len(s))
        return len(s.encode())

    text = "word " * 20_000
    chunk_markdown(text, 500, measure=counting)
    assert max(seen) <= 4 * 500 + 10


def test_an_expensive_measure_is_called_a_few_times_per_chunk() -> None:
    calls = 0

    def rendered(s: str) -> int:  # e.g. render to HTML, then count
        nonlocal calls
        calls += 1
        return len(html.escape(s))

    text = " ".join(["a<b", "word", "x&y", "plain", "\n\n"] * 4000)
    chunks = chunk_markdown(text, 4000, measure=rendered)
    assert all(rendered(c) <= 4000 for c in chunks)
    assert calls - len(chunks) <= 6 * len(chunks)


def test_measure_calls_grow_linearly_with_the_text() -> None:
    def calls_for(text: str) -> int:
        calls = 0

        def counting(s: str) -> int:
            nonlocal calls
            calls += 1
            return len(s)

        chunk_markdown(text, 400, measure=counting)
        return calls

    block = "Some prose (with parens) here.\n\n```py\n" + "x = 1\n" * 40 + "```\n\n"
    small, large = calls_for(block * 50), calls_for(block * 500)
    assert large <= 11 * small


# -- dispatch and edges ----------------------------------------------------------------


def test_chunk_text_dispatches_on_the_provider_kind() -> None:
    text = "```\n" + "x\n" * 50 + "```"
    assert chunk_text(text, 30, "markdown") == chunk_markdown(text, 30)
    assert chunk_text(text, 30, "plain") == chunk_plain(text, 30)
    assert chunk_text(text, 30, "none") == [text]
    assert chunk_text("", 30, "none") == []


def test_rejects_unknown_kind_and_nonpositive_limits() -> None:
    with pytest.raises(ValueError, match="chunker kind"):
        chunk_text("x", 10, "html")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        chunk_plain("x", 0)
