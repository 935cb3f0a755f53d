"""Is a scheduled job's SQL one read-only statement? A static check, before any database sees it.

The text is scanned once, skipping string literals (``'...'`` with ``''`` escapes),
quoted identifiers (``"..."`` and MySQL's backticks), dollar-quoted strings (PostgreSQL
``$$...$$``/``$tag$...$tag$``) and comments (``--``, ``#``, ``/* */``). MySQL and standard
SQL disagree on backslashes, ``#`` and ``$``: the text is read both ways and must pass both.
Outside of those:

* at most one statement: a ``;`` may only end the text;
* it starts with ``SELECT``, ``WITH``, ``VALUES`` or ``(`` (a parenthesised select);
* no keyword that writes, locks or reaches outside the query (``INSERT``, ``UPDATE``,
  ``DELETE``, ``INTO`` as in ``SELECT ... INTO`` or ``INTO OUTFILE``, ``FOR UPDATE``,
  ``COPY``, ``CALL`` ... see ``FORBIDDEN``) appears as a word anywhere, so a
  data-modifying CTE (``WITH d AS (DELETE ... RETURNING *) SELECT ...``) is refused too.

This is the first of two locks: the query also runs in a read-only session (see
``connectors.job_sources``), which catches what a scan cannot (a function with side effects).
"""

from __future__ import annotations

import re
from typing import Final

# Words that write, lock or leave the query when they appear inside a SELECT or WITH (other
# statements cannot, as the first word must be SELECT/WITH/VALUES). Kept short on purpose:
# every word here is also refused as an unquoted column name.
FORBIDDEN: Final = frozenset(
    {
        "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "INTO", "CREATE", "DROP", "ALTER",
        "TRUNCATE", "GRANT", "REVOKE", "COPY", "CALL", "EXEC", "EXECUTE", "LOCK", "SHARE",
        "OUTFILE", "DUMPFILE", "PRAGMA", "ATTACH", "DETACH", "VACUUM",
    }
)  # fmt: skip
STARTS: Final = frozenset({"SELECT", "WITH", "VALUES"})
MAX_SQL_CHARS: Final = 100_000

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class SqlNotAllowed(ValueError):
    """The SQL is not a single read-only statement; the message says why."""


def check_read_only(sql: str) -> None:
    """Raise :class:`SqlNotAllowed` unless ``sql`` is one read-only SELECT/WITH statement."""
    if len(sql) > MAX_SQL_CHARS:
        raise SqlNotAllowed(f"the query is longer than {MAX_SQL_CHARS} characters")
    # MySQL reads backslash escapes in strings and '#' comments; standard SQL (PostgreSQL,
    # SQLite) reads neither but has dollar quoting. The text must pass under both readings,
    # or a quote or comment could hide a second statement from one of them.
    _check_words(*_scan(sql, mysql=True))
    _check_words(*_scan(sql, mysql=False))


def _check_words(words: list[str], statements: int) -> None:
    if not words:
        raise SqlNotAllowed("the query is empty")
    if statements > 1:
        raise SqlNotAllowed("only one statement is allowed (a ';' may only end the query)")
    first = words[0]
    if first != "(" and first not in STARTS:
        raise SqlNotAllowed(f"only SELECT or WITH queries are allowed, not {first}")
    bad = sorted({w for w in words if w in FORBIDDEN})
    if bad:
        raise SqlNotAllowed(f"the query may only read: {', '.join(bad)} is not allowed")


def _scan(sql: str, *, mysql: bool) -> tuple[list[str], int]:
    """Upper-cased words outside literals and comments (and '(' when it comes first), and
    the number of statements (text after a ';' that is not blank starts another)."""
    words: list[str] = []
    statements = 0
    pending_end = False  # a ';' was seen: anything but blanks/comments after it is a statement
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        skip = _skip_opaque(sql, i, mysql)
        if skip is not None:
            if skip[1]:  # a literal, not a comment: it is content
                if pending_end:
                    statements, pending_end = statements + 1, False
                if not words:
                    words.append("<literal>")
            i = skip[0]
            continue
        if ch == ";":
            if statements == 0:
                statements = 1
            pending_end = True
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        if pending_end:
            statements += 1
            pending_end = False
        if statements == 0:
            statements = 1
        match = _WORD.match(sql, i)
        if match:
            words.append(match.group().upper())
            i = match.end()
            continue
        if ch == "(" and not words:
            words.append("(")
        i += 1
    return words, statements


def _skip_opaque(sql: str, i: int, mysql: bool) -> tuple[int, bool] | None:
    """Where a literal or comment starting at ``i`` ends, and whether it is a literal."""
    ch, nxt = sql[i], sql[i + 1 : i + 2]
    if (ch == "-" and nxt == "-") or (mysql and ch == "#"):
        end = sql.find("\n", i)
        return (len(sql) if end < 0 else end + 1), False
    if ch == "/" and nxt == "*":
        end = sql.find("*/", i + 2)
        if end < 0:
            raise SqlNotAllowed("unterminated /* comment")
        return end + 2, False
    if ch in ("'", '"', "`"):
        return _quoted_end(sql, i, ch, mysql and ch == "'"), True
    if ch == "$" and not mysql:
        tag = _DOLLAR_TAG.match(sql, i)
        if tag:
            end = sql.find(tag.group(), tag.end())
            if end < 0:
                raise SqlNotAllowed("unterminated dollar-quoted string")
            return end + len(tag.group()), True
    return None


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    j = i + 1
    while j < len(sql):
        if backslash and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == quote:
            if sql[j + 1 : j + 2] == quote:  # doubled quote: an escaped one
                j += 2
                continue
            return j + 1
        j += 1
    raise SqlNotAllowed(f"unterminated {quote} quoted text")
