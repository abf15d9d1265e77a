"""A migration file cut into statements, each with the line it starts on; and a statement read word by word.

The splitter knows what hides a `;`: `--` and `/* */` comments (nested in PostgreSQL), `#` comments in
MySQL, quoted strings and identifiers (with their escapes), and PostgreSQL's dollar-quoted bodies. A MySQL
`DELIMITER` block cannot be read reliably without a client's rules: it becomes one statement marked as a
problem, and is judged as unparsed.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_DELIMITER_END = re.compile(r"^[ \t]*DELIMITER[ \t]+;[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_DELIMITER_RESET = re.compile(r"DELIMITER[ \t]+;[ \t]*\r?(?:\n|$)", re.IGNORECASE)
# Identifiers may hold letters beyond ASCII (PostgreSQL and MySQL both allow them unquoted).
_WORD = re.compile(r"[^\W\d][\w$]*")
_ATOMIC = re.compile(r"\s+ATOMIC\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Statement:
    """One statement of a file, as written, without its terminating `;`."""

    text: str
    line: int                   # 1-based line of its first character (comments before it do not count)
    start: int                  # offset of its first character in the file
    end: int                    # offset just past its last character (the `;` when there is one)
    problem: str | None = None  # why it cannot be read as SQL (an unterminated quote, a DELIMITER block)

    def short(self, width: int = 120) -> str:
        """The statement on one line, cut to `width` characters."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"


def is_mysql(dialect: str) -> bool:
    """MySQL and MariaDB share a lexical syntax."""
    return dialect in ("mysql", "mariadb")


class _Lines:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def offset_of(self, line: int, column: int = 0) -> int:
        """The offset of a 1-based line and a 0-based column (clamped to the text)."""
        line = min(max(line, 1), len(self.starts))
        return self.starts[line - 1] + max(column, 0)


def line_offsets(text: str) -> _Lines:
    """Where each line of `text` starts: for mapping other tools' line:column positions to offsets."""
    return _Lines(text)


def _comment_end(text: str, i: int, mysql: bool) -> int | None:
    """If a comment starts at `i`, the offset just past it; else None."""
    c = text[i]
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if c == "-" and nxt == "-":
        # MySQL needs whitespace (or the end) after `--`; PostgreSQL does not.
        after = text[i + 2] if i + 2 < len(text) else ""
        if mysql and after and not after.isspace():
            return None
        end = text.find("\n", i)
        return len(text) if end < 0 else end + 1
    if c == "#" and mysql:
        end = text.find("\n", i)
        return len(text) if end < 0 else end + 1
    if c == "/" and nxt == "*":
        if mysql and text.startswith(("/*!", "/*M!"), i):
            return None  # MySQL runs what an executable comment holds: it is part of the statement
        depth, j = 1, i + 2
        while j < len(text):
            if text.startswith("*/", j):
                depth -= 1
                j += 2
                if depth == 0 or mysql:
                    return j
                continue
            if not mysql and text.startswith("/*", j):
                depth += 1
                j += 2
                continue
            j += 1
        return len(text)
    return None


def _blank_end(text: str, i: int, mysql: bool, *, space: bool = True) -> int | None:
    """If white space (when `space`) or a comment starts at `i`, the offset just past it; else None."""
    if space and text[i].isspace():
        return i + 1
    return _comment_end(text, i, mysql)


def _quoted_end(text: str, i: int, mysql: bool) -> int | None:
    """If a quoted string or identifier starts at `i`, the offset just past its closing quote (-1 when it
    is never closed); else None."""
    c = text[i]
    if c == "$" and not mysql:
        if i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$"):
            return None  # part of an identifier like a$b, not a dollar quote
        match = _DOLLAR_TAG.match(text, i)
        if not match:
            return None
        close = text.find(match.group(0), match.end())
        return -1 if close < 0 else close + len(match.group(0))
    if c not in "'\"`" or (c == "`" and not mysql):
        return None
    backslash = mysql and c != "`"
    if c == "'" and not mysql and i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum()
                                                                                  or text[i - 2] == "_")):
        backslash = True  # E'...' escape strings
    j = i + 1
    while j < len(text):
        ch = text[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == c:
            if j + 1 < len(text) and text[j + 1] == c:
                j += 2
                continue
            return j + 1
        j += 1
    return -1


def split_statements(text: str, dialect: str) -> list[Statement]:
    """The statements of a migration file, in order, with their 1-based starting lines."""
    mysql = is_mysql(dialect)
    lines = _Lines(text)
    found: list[Statement] = []
    start: int | None = None
    problem: str | None = None
    atomic = 0
    i, n = 0, len(text)

    def close(end: int, stop: int) -> None:
        nonlocal start, problem
        assert start is not None
        body = text[start:end].rstrip()
        if body:
            found.append(Statement(body, lines.line_of(start), start, stop, problem))
        start, problem = None, None

    while i < n:
        c = text[i]
        # Between statements white space is skipped; inside one it is part of the statement.
        blank = _blank_end(text, i, mysql, space=start is None)
        if blank is not None:
            i = blank
            continue
        if start is None:
            if mysql and (reset := _DELIMITER_RESET.match(text, i)):
                i = reset.end()  # `DELIMITER ;` alone changes nothing
                continue
            if mysql and re.match(r"DELIMITER\s", text[i:i + 10], re.IGNORECASE):
                line_end = text.find("\n", i)
                back = _DELIMITER_END.search(text, line_end + 1) if line_end >= 0 else None
                stop = back.end() if back else n
                start, problem = i, "a DELIMITER block: the statements inside it cannot be told apart"
                close(stop, stop)
                i = stop
                continue
            start = i
        if c == ";" and not atomic:
            close(i, i + 1)
            i += 1
            continue
        if not mysql and (c.isalpha() or c == "_") and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_$")):
            # A SQL-standard function body (BEGIN ATOMIC ... END, PostgreSQL 14+) holds semicolons; CASE ... END
            # nests inside it.
            word = _WORD.match(text, i)
            assert word is not None
            upper = word.group(0).upper()
            if (upper == "BEGIN" and _ATOMIC.match(text, word.end())) or (atomic and upper == "CASE"):
                atomic += 1
            elif atomic and upper == "END":
                atomic -= 1
            i = word.end()
            continue
        quoted = _quoted_end(text, i, mysql)
        if quoted is not None:
            if quoted < 0:
                problem = "a quoted string or identifier that is never closed"
                i = n
                break
            i = quoted
            continue
        i += 1
    if start is not None:
        close(n, n)
    return found


@dataclass(frozen=True)
class Word:
    """One lexical unit of a statement."""

    kind: str   # word | quoted (an identifier) | string | number | punct
    text: str   # as written
    value: str  # a word upper-cased, an identifier or a string without its quotes, a punct as itself
    start: int
    end: int

    @property
    def is_name(self) -> bool:
        """Whether this can name a table, a column or an index."""
        return self.kind in ("word", "quoted")

    @property
    def name(self) -> str:
        """The name it spells: an unquoted word as written, a quoted identifier without its quotes."""
        return self.text if self.kind == "word" else self.value


def _unquote(raw: str, mysql: bool) -> str:
    quote = raw[0]
    if quote == "$":
        tag_end = raw.index("$", 1) + 1
        return raw[tag_end:len(raw) - tag_end]
    body = raw[1:-1] if len(raw) > 1 and raw[-1] == quote else raw[1:]
    body = body.replace(quote * 2, quote)
    if mysql and quote != "`":
        body = re.sub(r"\\(.)", r"\1", body)
    return body


def lex(text: str, dialect: str) -> list[Word]:
    """The words of one statement, comments left out."""
    mysql = is_mysql(dialect)
    words: list[Word] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        blank = _blank_end(text, i, mysql)
        if blank is not None:
            i = blank
            continue
        quoted = _quoted_end(text, i, mysql)
        if quoted is not None:
            end = n if quoted < 0 else quoted
            raw = text[i:end]
            identifier = c == "`" or (c == '"' and not mysql)
            words.append(Word("quoted" if identifier else "string", raw, _unquote(raw, mysql), i, end))
            i = end
            continue
        if c.isalnum() or c in "_@$":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_@$"):
                j += 1
            raw = text[i:j]
            number = _NUMBER.fullmatch(raw)
            if c.isdigit() and j < n and text[j] == "." and number:
                more = _NUMBER.match(text, i)
                if more:
                    j = more.end()
                    raw = text[i:j]
            kind = "number" if _NUMBER.fullmatch(raw) else "word"
            words.append(Word(kind, raw, raw.upper() if kind == "word" else raw, i, j))
            i = j
            continue
        if text.startswith("::", i):
            words.append(Word("punct", "::", "::", i, i + 2))
            i += 2
            continue
        words.append(Word("punct", c, c, i, i + 1))
        i += 1
    return words


class Words:
    """A cursor over a statement's words, for the rules that read statements themselves."""

    def __init__(self, words: list[Word], source: str) -> None:
        self.words = words
        self.source = source
        self.i = 0

    def peek(self, ahead: int = 0) -> Word | None:
        """The word `ahead` places from here, if any."""
        j = self.i + ahead
        return self.words[j] if j < len(self.words) else None

    def at(self, *keywords: str) -> bool:
        """Whether the next words are these keywords (a keyword `(`, `,` or `=` matches that punct)."""
        for k, keyword in enumerate(keywords):
            word = self.peek(k)
            if word is None or word.kind not in ("word", "punct") or word.value != keyword:
                return False
        return True

    def at_any(self, *keywords: str) -> str | None:
        """The keyword among these that comes next, if one does."""
        word = self.peek()
        if word is not None and word.kind == "word" and word.value in keywords:
            return word.value
        return None

    def take(self, *keywords: str) -> bool:
        """Step over these keywords if they come next."""
        if self.at(*keywords):
            self.i += len(keywords)
            return True
        return False

    def next(self) -> Word | None:
        """The next word, stepping over it."""
        word = self.peek()
        if word is not None:
            self.i += 1
        return word

    def done(self) -> bool:
        """Whether every word has been read."""
        return self.i >= len(self.words)

    def name(self) -> str | None:
        """A possibly qualified name (`db.table`): its last part; None unless a name comes next."""
        word = self.peek()
        if word is None or not word.is_name:
            return None
        self.i += 1
        last = word.name
        while True:
            dot, after = self.peek(), self.peek(1)
            if dot is None or dot.kind != "punct" or dot.value != "." or after is None or not after.is_name:
                return last
            self.i += 2
            last = after.name

    def rest(self) -> str:
        """The text from the next word to the last."""
        word = self.peek()
        return "" if word is None else self.source[word.start:self.words[-1].end].strip()

    def remaining(self) -> list[Word]:
        """The words not read yet."""
        return self.words[self.i:]

    def keywords(self) -> list[str]:
        """The words not read yet, upper-cased, without names in quotes, strings, numbers or punctuation."""
        return [word.value for word in self.remaining() if word.kind == "word"]

    def skip_group(self) -> bool:
        """Step over a parenthesised group if one comes next."""
        if not self.at("("):
            return False
        depth = 0
        while (word := self.next()) is not None:
            if word.kind == "punct" and word.value == "(":
                depth += 1
            elif word.kind == "punct" and word.value == ")":
                depth -= 1
                if depth == 0:
                    return True
        return True

    def split(self, separator: str = ",") -> Iterator[Words]:
        """The rest, cut at top-level `separator`s: one cursor per part (each over the same source)."""
        depth, part = 0, list[Word]()
        for word in self.remaining():
            if word.kind == "punct" and word.value == "(":
                depth += 1
            elif word.kind == "punct" and word.value == ")":
                depth -= 1
            if depth == 0 and word.kind == "punct" and word.value == separator:
                yield Words(part, self.source)
                part = []
                continue
            part.append(word)
        if part:
            yield Words(part, self.source)
        self.i = len(self.words)

    def text(self) -> str:
        """The source text these words span."""
        if not self.words:
            return ""
        return self.source[self.words[0].start:self.words[-1].end]

    def text_from(self, index: int, stop: int | None = None) -> str:
        """The source text of words[index:stop]."""
        part = self.words[index:stop]
        if not part:
            return ""
        return self.source[part[0].start:part[-1].end]
