"""Split outbound text into provider-sized chunks.

* ``chunk_plain`` breaks at the last newline in the window, else the last whitespace, else
  hard; candidates inside a parenthetical are skipped while a better one exists.
* ``chunk_markdown`` also never leaves a fenced code block unbalanced: a chunk ending inside
  a fence gets ``indent + marker`` appended and the next chunk starts with the original
  opener line (indentation, ``~~~``/four-backtick markers and info string kept).

Every chunk satisfies ``measure(chunk) <= limit`` (``len``, ``utf16_len`` for Telegram, or
any callable), added fence lines included. Chunks never split a grapheme cluster unless it
alone is longer than the limit (it is then split between code points; only a single code
point longer than the limit, an emoji at a UTF-16 limit of 1, makes a chunk too long).
Boundaries come from the ``regex`` package's ``\\X`` (full UAX #29: combining marks, ZWJ
emoji, variation selectors, skin tones, flags, CRLF), evaluated only at break points.

Linear in the input: fences and parentheses are mapped once, the engine walks forward, and
``measure`` only ever sees windows. ``len`` and ``utf16_len`` (recognised by identity) are
computed arithmetically; any other measure is searched over prefixes of at most
``4 * limit`` characters, so it must grow with the text and count at least one unit per
four characters.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import regex

__all__ = ["chunk_markdown", "chunk_plain", "chunk_text", "utf16_len"]

Measure = Callable[[str], int]

# A fence line: up to three spaces, then three or more backticks or tildes, then anything.
_FENCE_LINE = r"( {0,3})(`{3,}|~{3,})[^\n]*"
_FIRST_FENCE_LINE = re.compile(_FENCE_LINE)
_NEXT_FENCE_LINE = re.compile("\n" + _FENCE_LINE)  # a literal first char scans much faster
_PAREN = re.compile(r"[()]")
_LEADING_SPACE = re.compile(r"\s*")
_NON_SPACE = re.compile(r"\S")
_LAST_NON_SPACE = regex.compile(r"(?r)\S")
# Whitespace we may break at: not newlines (handled first) and not the no-break spaces.
_LAST_BREAK_SPACE = regex.compile(r"(?r)[^\S\n\r\u00a0\u2007\u202f]")
_CLUSTER = regex.compile(r"\X")
_CLUSTERS = regex.compile(r"(?:(\X))*")
# Grapheme boundaries decidable from two adjacent characters alone (UAX #29): GB3-GB5,
# then pairs that no joining rule (GB6-GB13) can apply to.
_GCB = r"\p{{Grapheme_Cluster_Break={}}}"
_CONTROL, _PREPEND = _GCB.format("Control"), _GCB.format("Prepend")
_EXTENDING = _GCB.format("Extend") + _GCB.format("ZWJ") + _GCB.format("SpacingMark")
_OTHER = _GCB.format("Other")
_PLAIN = rf"[{_OTHER}--\p{{Extended_Pictographic}}--\p{{Indic_Conjunct_Break=Consonant}}]"
_BOUNDARY_PAIR = (
    rf"[{_CONTROL}\n].|\r[^\n]|[^\r][{_CONTROL}\r\n]"
    rf"|{_OTHER}[^{_EXTENDING}]|[^{_PREPEND}]{_PLAIN}"
)
_BOUNDARY_AT = regex.compile(rf"(?V1s){_BOUNDARY_PAIR}")
_LAST_BOUNDARY = regex.compile(rf"(?V1sr){_BOUNDARY_PAIR}")
_JOINED_AT = regex.compile(
    rf"(?V1s)\r\n|[^{_CONTROL}\r\n][{_EXTENDING}]|{_PREPEND}[^{_CONTROL}\r\n]"
)
_ANCHOR_LOOKBACK = 64

_NEWLINE, _SPACE, _HARD = 0, 1, 2


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the way Telegram (and JavaScript) count."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True, slots=True)
class _Fence:
    open_start: int
    open_end: int  # end of the opener line (its newline, or len(text))
    close_start: int  # start of the closing line, or len(text) when unclosed
    close_end: int  # end of the closing line, or len(text) when unclosed
    opener: str  # the opener line verbatim, reused when reopening
    closer: str  # indent + marker: enough to close it


def _parse_fences(text: str) -> list[_Fence]:
    """Fenced blocks in order; a fence closes on a line of the same char, at least as long."""
    fences: list[_Fence] = []
    first = _FIRST_FENCE_LINE.match(text)
    lines = _NEXT_FENCE_LINE.finditer(text)
    opening: re.Match[str] | None = None
    for line in itertools.chain([first] if first else [], lines):
        if opening is None:
            opening = line
            continue
        marker, opener_marker = line.group(2), opening.group(2)
        if marker[0] == opener_marker[0] and len(marker) >= len(opener_marker):
            fences.append(_Fence(opening.start(1), opening.end(), line.start(1), line.end(),
                                 text[opening.start(1):opening.end()],
                                 opening.group(1) + opener_marker))
            opening = None
    if opening is not None:
        n = len(text)
        fences.append(_Fence(opening.start(1), opening.end(), n, n,
                             text[opening.start(1):opening.end()],
                             opening.group(1) + opening.group(2)))
    return fences


class _Meter:
    """Finds the longest window that fits; exact arithmetic for ``len``."""

    def __init__(self, text: str, limit: int, measure: Measure) -> None:
        self.text, self.limit, self.measure = text, limit, measure

    def fit(self, s: int, hi: int, prefix: str, suffix: str) -> int:
        """Largest e <= hi with measure(prefix + text[s:e] + suffix) <= limit (s if none)."""
        room = self.limit - len(prefix) - len(suffix)
        return min(hi, s + room) if room > 0 else s


class _Utf16Meter(_Meter):
    """UTF-16 units without prefix sums: encode only the window being fitted."""

    def __init__(self, text: str, limit: int, measure: Measure) -> None:
        super().__init__(text, limit, measure)
        self.last = (-1, -1, 0)  # (s, e, units of text[s:e]): fits from one s overlap

    def _units(self, a: int, b: int) -> int:
        return len(self.text[a:b].encode("utf-16-le", "surrogatepass")) // 2

    def _prefix_units(self, s: int, e: int) -> int:
        last_s, last_e, units = self.last
        if last_s != s:
            units = self._units(s, e)
        elif e <= last_e:
            units -= self._units(e, last_e)
        else:
            units += self._units(last_e, e)
        self.last = (s, e, units)
        return units

    def fit(self, s: int, hi: int, prefix: str, suffix: str) -> int:
        room = self.limit - utf16_len(prefix) - utf16_len(suffix)
        e = min(hi, s + room)
        if e <= s:
            return s
        excess = self._prefix_units(s, e) - room
        if excess <= 0:
            return e
        # Dropping `excess` characters always fits (each is >= 1 unit); then grow by half
        # the remaining gap at a time (each character is <= 2 units), so this is O(window).
        e -= excess
        gap = room - self._prefix_units(s, e)
        while gap > 1 and e < hi:
            step = min(gap // 2, hi - e)
            gap -= self._units(e, e + step)
            e += step
        if gap == 1 and e < hi and ord(self.text[e]) < 0x10000:
            e += 1
        return e


class _SearchMeter(_Meter):
    """Any other measure: a guarded secant search over prefixes of <= 4 * limit characters.

    Measures like render-then-count cost O(length) per call, so few calls matter: a first
    guess of one unit per character, interpolation between samples, and a bisection
    whenever the same end moves twice (which keeps the worst case logarithmic).
    """

    def fit(self, s: int, hi: int, prefix: str, suffix: str) -> int:
        limit, text, measure = self.limit, self.text, self.measure
        top = min(hi, s + 4 * limit)
        lo, lo_size = s, 0  # an empty body is taken to fit
        bad, bad_size = top + 1, 0  # no sample too long yet
        e, last_side = min(top, s + limit), 0
        while bad - lo > 1:
            size = measure(prefix + text[s:e] + suffix)
            side = 1 if size <= limit else -1
            if side > 0:
                lo, lo_size = e, size
            else:
                bad, bad_size = e, size
            if bad > top:  # everything fits so far: extrapolate, at least doubling
                e = s + (lo - s) * limit // max(size, 1)
                if side == last_side:
                    e = max(e, s + 2 * (lo - s))
            elif side == last_side:
                e = (lo + bad) // 2
            else:
                e = lo + (bad - lo) * (limit - lo_size) // max(1, bad_size - lo_size)
            e, last_side = min(bad - 1, max(lo + 1, e)), side
        return lo


def _meter(text: str, limit: int, measure: Measure) -> _Meter:
    if measure is len or (measure is utf16_len and utf16_len(text) == len(text)):
        return _Meter(text, limit, measure)
    if measure is utf16_len:
        return _Utf16Meter(text, limit, measure)
    return _SearchMeter(text, limit, measure)


@dataclass(frozen=True, slots=True)
class _Cut:
    end: int  # the chunk takes text[start:end]
    resume: int  # the next chunk starts here (before trimming)
    kind: int  # _NEWLINE, _SPACE or _HARD
    close: _Fence | None = None  # append this fence's closer (its own line unless reopen)
    reopen: bool = False  # start the next chunk with the fence's opener
    bare: bool = False  # fence handling abandoned: no reopen prefix on this chunk
    forced: bool = False  # a single cluster longer than the limit: nothing shorter exists


class _Chunker:
    """One pass over one text: choose a break per chunk, never look back."""

    def __init__(self, text: str, limit: int, measure: Measure, markdown: bool,
                 max_lines: int | None) -> None:
        self.text, self.n, self.limit, self.measure = text, len(text), limit, measure
        self.meter = _meter(text, limit, measure)
        self.exact = type(self.meter) is not _SearchMeter
        self.markdown, self.max_lines = markdown, max_lines
        self.fences = _parse_fences(text) if markdown else []
        self.starts = [f.open_start for f in self.fences]
        self.ends = [f.close_end for f in self.fences]
        self.blocked = self._map_blocked()
        self.blocked_starts = [a for a, _ in self.blocked]
        self.blocked_ends = [b for _, b in self.blocked]

    def run(self) -> list[str]:
        chunks: list[str] = []
        s, inside = 0, None
        while s < self.n:
            prefix = self._reopen_line(inside, s) if inside is not None else ""
            cut, chunk = self._checked_cut(s, prefix)
            if chunk.strip():
                chunks.append(chunk)
            if cut.reopen:
                s, inside = cut.resume, cut.close
            else:
                s, inside = self._trim_start(cut.resume, cut.kind), None
        return chunks

    def _reopen_line(self, f: _Fence, s: int) -> str:
        """The original opener, or the bare marker when the opener leaves no room."""
        full = f.opener + "\n"
        if s > f.open_end and self.meter.fit(s, s + 1, full, "\n" + f.closer) > s:
            return full
        return f.closer + "\n"

    def _checked_cut(self, s: int, prefix: str) -> tuple[_Cut, str]:
        hi = self.n
        while True:
            cut = self._select(s, prefix, hi, lines=True, fences=True)
            chunk = self._build(s, "" if cut.bare else prefix, cut)
            # len/utf16 are exact by construction; other measures may not be additive
            # (e.g. render-then-count), so verify and shrink the window geometrically.
            if self.exact or cut.forced or self.measure(chunk) <= self.limit:
                return cut, chunk
            hi = s + (cut.end - s) * 3 // 4
            if hi <= s:
                return cut, chunk

    def _build(self, s: int, prefix: str, cut: _Cut) -> str:
        if cut.reopen and cut.close is not None:
            body = self.text[s:cut.end]  # code: keep its whitespace
            sep = "" if body.endswith("\n") else "\n"
            return prefix + body + sep + cut.close.closer
        body = self.text[s:self._trim_end(s, cut.end)]
        if cut.close is not None and cut.close.close_end > cut.close.close_start:
            # Only whitespace was left in the fence: end it with its own closing line.
            return prefix + body + "\n" + self.text[cut.close.close_start:cut.close.close_end]
        return prefix + body

    # -- choosing the break ------------------------------------------------------------

    def _select(self, s: int, prefix: str, hi: int, *, lines: bool, fences: bool) -> _Cut:
        """The best break for the chunk starting at s (after `prefix`), within text[:hi]."""
        text, n = self.text, self.n
        if not fences:
            prefix = ""
        w = self.meter.fit(s, hi, prefix, "")
        newlines = self._newlines(s, w, prefix) if lines else []
        budget = self._line_budget(prefix)
        if newlines and len(newlines) >= budget:
            w = newlines[budget - 1]
        elif w >= n:
            return _Cut(n, n, _HARD, bare=not fences)
        # A fence we resumed inside without reopening was given up on: plain text now.
        stale = self._fence_at(s) if fences and not prefix else None
        spans = [f for f in self._fences_between(s, w) if f is not stale] if fences else []
        fence_blocks = [(f.open_start, f.close_end) for f in spans]
        blocks = self._blocked_between(s, w) if fences else fence_blocks
        last = min(w, n - 1)

        def find_space(a: int, b: int) -> int:
            return self._find_space(a, b, s)

        def find_newline(a: int, b: int) -> int:
            return text.rfind("\n", a, b)

        def cut_at(i: int, kind: int) -> _Cut:
            end = i - 1 if kind == _NEWLINE and text[i - 1] == "\r" else i
            return _Cut(end, i + 1, kind, bare=not fences)

        # Depth-0 candidates outside fences first; then a newline inside a fence; only
        # then a break inside parentheses, which still beats cutting a word.
        for find, kind in ((find_newline, _NEWLINE), (find_space, _SPACE)):
            i = _last_free(find, s + 1, last + 1, blocks)
            if i >= 0:
                return cut_at(i, kind)
        cut = self._newline_in_fence(s, w, prefix, spans, newlines)
        if cut is not None:
            return cut
        for find, kind in ((find_newline, _NEWLINE), (find_space, _SPACE)):
            i = _last_free(find, s + 1, last + 1, fence_blocks)
            if i >= 0:
                return cut_at(i, kind)
        cut = self._hard_cut(s, w, prefix, newlines, fences, stale)
        if cut is not None:
            return cut
        # The limit cannot hold the fence decorations (or the line limit cannot be met with
        # them): drop the soft line limit first, then fence handling for this chunk.
        return self._select(s, prefix, hi, lines=False, fences=lines)

    def _newline_in_fence(self, s: int, w: int, prefix: str, spans: list[_Fence],
                          newlines: list[int]) -> _Cut | None:
        for f in reversed(spans):
            content = s if s > f.open_start else f.open_end + 1
            if content > w:
                continue
            top = min(self._fence_window(s, w, prefix, f, newlines), self._last_non_space(f) - 1)
            first = _NON_SPACE.search(self.text, content, max(content, top))
            if first is None:
                continue
            i = self.text.rfind("\n", first.start() + 1, top + 1)
            if i >= 0:
                end = i - 1 if self.text[i - 1] == "\r" else i
                return _Cut(end, i + 1, _NEWLINE, close=f, reopen=True)
        return None

    def _hard_cut(self, s: int, w: int, prefix: str, newlines: list[int], fences: bool,
                  stale: _Fence | None) -> _Cut | None:
        f = self._fence_at(w) if fences else None
        if f is None or f is stale:
            end = self._cluster_floor(w, s)
            if end > s:
                return _Cut(end, end, _HARD, bare=not fences)
            # The first cluster alone is longer than the window: split it, one code point
            # at the very least.
            end = max(w, s + 1)
            return _Cut(end, end, _HARD, bare=not fences, forced=True)
        if w > f.open_end or s > f.open_start:  # inside the content or the closing line
            wf = self._fence_window(s, min(w, f.close_start), prefix, f, newlines)
            end = self._cluster_floor(wf, s)
            last = max(s, self._last_non_space(f))
            if end > last:
                # Reopening would leave a chunk of fence lines only: drop the whitespace and
                # close with the fence's own closing line instead, if it fits.
                own = "\n" + self.text[f.close_start:f.close_end]
                end = self._cluster_floor(self.meter.fit(s, wf, prefix, own), s)
                if end > last:
                    return _Cut(end, f.close_end, _NEWLINE, close=f)
            content = s if s > f.open_start else f.open_end + 1
            if _NON_SPACE.search(self.text, content, max(content, end)):
                return _Cut(end, end, _HARD, close=f, reopen=True)
        elif f.open_start == s:
            # The opener line alone is longer than the limit: close it here; the rest of
            # the line continues after a bare marker (see _reopen_line).
            end = self._cluster_floor(self.meter.fit(s, w, prefix, "\n" + f.closer), s)
            if end > s + len(f.closer):
                return _Cut(end, end, _HARD, close=f, reopen=True)
        if f.open_start > s:  # no room for any of the fence: end the chunk before it
            return _Cut(f.open_start, f.open_start, _HARD)
        return None

    def _fence_window(self, s: int, w: int, prefix: str, f: _Fence, newlines: list[int]) -> int:
        wf = self.meter.fit(s, w, prefix, "\n" + f.closer)
        budget = self._line_budget(prefix) - 1  # the closing line takes one
        if budget >= 1 and len(newlines) >= budget:
            wf = min(wf, newlines[budget - 1])
        return wf

    # -- helpers -----------------------------------------------------------------------

    def _line_budget(self, prefix: str) -> int:
        if self.max_lines is None:
            return 0
        return self.max_lines - (1 if prefix else 0)

    def _newlines(self, s: int, w: int, prefix: str) -> list[int]:
        """Positions of the first few newlines in text[s:w], as many as the line budget."""
        budget = self._line_budget(prefix)
        found: list[int] = []
        i = s - 1
        while len(found) < budget:
            i = self.text.find("\n", i + 1, w)
            if i < 0:
                break
            found.append(i)
        return found

    def _fences_between(self, s: int, w: int) -> list[_Fence]:
        lo = bisect.bisect_right(self.ends, s)
        hi = bisect.bisect_right(self.starts, w)
        return self.fences[lo:hi]

    def _fence_at(self, p: int) -> _Fence | None:
        """The fence a cut at p would split (strictly after its first character)."""
        k = bisect.bisect_left(self.starts, p) - 1
        if k >= 0 and p < self.fences[k].close_end:
            return self.fences[k]
        return None

    def _last_non_space(self, f: _Fence) -> int:
        m = _LAST_NON_SPACE.search(self.text, f.open_end + 1, f.close_start)
        return m.start() if m else f.open_end

    def _blocked_between(self, s: int, w: int) -> list[tuple[int, int]]:
        """Code blocks and parentheticals overlapping text[s:w], as sorted [a, b) ranges."""
        lo = bisect.bisect_right(self.blocked_ends, s)
        return self.blocked[lo:bisect.bisect_right(self.blocked_starts, w)]

    def _map_blocked(self) -> list[tuple[int, int]]:
        """One pass over the parentheses outside code: pairs that close within `limit`
        characters are parentheticals; a "(" that never closes (":(") opens nothing."""
        blocked: list[tuple[int, int]] = []  # sorted and disjoint as built
        opened: list[int] = []
        text, reach = self.text, self.limit
        for f in [*self.fences, None]:
            for m in _PAREN.finditer(text, blocked[-1][1] if blocked else 0,
                                     f.open_start if f else self.n):
                p = m.start()
                if text[p] == "(":
                    opened.append(p)
                elif opened:
                    o = opened.pop()
                    if p - o <= reach:
                        while blocked and blocked[-1][0] > o:  # nested inside this pair
                            blocked.pop()
                        blocked.append((o + 1, p))
            if f is not None:
                blocked.append((f.open_start, f.close_end))
        return blocked

    def _find_space(self, a: int, b: int, lo: int) -> int:
        while b > a:
            m = _LAST_BREAK_SPACE.search(self.text, a, b)
            if m is None:
                return -1
            i = m.start()
            # A space can carry a combining mark, or follow a prepended one.
            if self._is_boundary(i, lo) and self._is_boundary(i + 1, lo):
                return i
            b = i
        return -1

    def _trim_end(self, s: int, end: int) -> int:
        stripped = s + len(self.text[s:end].rstrip())
        if stripped < end and not self._is_boundary(stripped, s):
            # e.g. a prepended mark binds to the following space: keep that cluster whole
            floor = self._cluster_floor(stripped, s)
            stripped = min(end, _CLUSTER.match(self.text, floor).end())
        return stripped

    def _trim_start(self, r: int, kind: int) -> int:
        """Drop whitespace at the break: plain drops all of it, markdown keeps indentation."""
        run_end = _LEADING_SPACE.match(self.text, r).end()
        if self.markdown:
            nl = self.text.rfind("\n", r, run_end)
            if nl >= 0:
                return nl + 1
            if kind == _NEWLINE:
                return r
        if r < run_end < self.n and not self._is_boundary(run_end, r):
            run_end = self._cluster_floor(run_end, r)  # a mark on a space: keep the space
        return run_end

    def _is_boundary(self, p: int, lo: int) -> bool:
        """Whether p is a grapheme boundary; lo <= p must be one."""
        if p <= lo or p >= self.n or _BOUNDARY_AT.match(self.text, p - 1):
            return True
        if _JOINED_AT.match(self.text, p - 1):
            return False
        return self._cluster_floor(p, lo) == p

    def _cluster_floor(self, p: int, lo: int) -> int:
        """The last grapheme boundary in [lo, p]; lo must itself be one."""
        if p <= lo or p >= self.n:
            return min(max(p, lo), self.n)
        anchor = _LAST_BOUNDARY.search(self.text, max(lo, p - _ANCHOR_LOOKBACK), p + 1)
        q = anchor.start() + 1 if anchor else lo
        if q >= p:
            return p
        # Boundaries before p do not depend on what follows p, so segment text[q:p] and
        # check only whether its last cluster really ends at p.
        last = _CLUSTERS.match(self.text, q, p).start(1)
        return p if _CLUSTER.match(self.text, last).end() == p else last


def _last_free(find: Callable[[int, int], int], lo: int, end: int,
               blocked: list[tuple[int, int]]) -> int:
    """The last hit of find in [lo, end) outside the sorted, disjoint blocked ranges."""
    k = len(blocked) - 1
    while end > lo:
        while k >= 0 and blocked[k][0] >= end:
            k -= 1
        if k >= 0 and blocked[k][1] >= end:
            end = blocked[k][0]
            k -= 1
            continue
        i = find(max(lo, blocked[k][1]) if k >= 0 else lo, end)
        if i >= 0 or k < 0:
            return i
        end = blocked[k][0]
        k -= 1
    return -1


def _chunk(text: str, limit: int, measure: Measure, markdown: bool,
           max_lines: int | None) -> list[str]:
    if limit < 1:
        raise ValueError(f"chunk limit must be at least 1, got {limit}")
    if max_lines is not None and max_lines < 1:
        raise ValueError(f"max_lines must be at least 1, got {max_lines}")
    if not text:
        return []
    lines_ok = max_lines is None or text.count("\n") < max_lines
    # Don't hand a huge text to a possibly expensive measure just to learn it is too long.
    small = measure is len or measure is utf16_len or len(text) <= 4 * limit
    if lines_ok and small and measure(text) <= limit:
        return [text]
    return _Chunker(text, limit, measure, markdown, max_lines).run()


def chunk_plain(text: str, limit: int, *, measure: Measure = len,
                max_lines: int | None = None) -> list[str]:
    """Split plain text at newlines, then whitespace (outside parentheses), then hard.

    Chunks are right-trimmed and the whitespace at each break is dropped.
    """
    return _chunk(text, limit, measure, False, max_lines)


def chunk_markdown(text: str, limit: int, *, measure: Measure = len,
                   max_lines: int | None = None) -> list[str]:
    """Split markdown like ``chunk_plain`` but keep every fenced code block balanced.

    A chunk ending inside a fence is closed with ``indent + marker`` and the next chunk
    reopens with the original opener line; both count towards the limit. ``max_lines`` is
    a soft line limit (Discord's 17): honoured wherever a line break allows it.
    """
    return _chunk(text, limit, measure, True, max_lines)


def chunk_text(text: str, limit: int, kind: Literal["markdown", "plain", "none"], *,
               measure: Measure = len, max_lines: int | None = None) -> list[str]:
    """Dispatch on the provider's chunker kind; ``none`` sends the text whole."""
    if kind == "markdown":
        return chunk_markdown(text, limit, measure=measure, max_lines=max_lines)
    if kind == "plain":
        return chunk_plain(text, limit, measure=measure, max_lines=max_lines)
    if kind == "none":
        return [text] if text else []
    raise ValueError(f"unknown chunker kind {kind!r}; expected markdown, plain or none")
