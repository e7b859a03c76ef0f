"""Read-only SQL gate for the database browser (spec §6.3 "Ours", DB-19).

The user's SQL is tokenised with the PostgreSQL lexical rules (not matched by regexes): string
literals (``'..'`` with ``''``, ``E'..'`` with backslash escapes, ``B''``/``X''``/``N''``),
dollar-quoted strings (``$$..$$``, ``$tag$..$tag$``), quoted identifiers, line comments and
nested block comments. On the token stream we enforce:

* exactly one statement (trailing semicolons are dropped; any other ``;`` is refused),
* the statement starts with ``SELECT`` or ``WITH`` (optionally behind opening parentheses),
* no data-modifying or utility keyword anywhere (``INSERT``/``UPDATE``/``DELETE``/``MERGE``/
  ``DROP``/``CREATE``/``ALTER``/``TRUNCATE``/``COPY``/``GRANT``/…, also inside a ``WITH``),
  no ``SELECT … INTO`` and no row-locking clause (``FOR UPDATE``/``FOR SHARE``),
* balanced parentheses and brackets (a stray ``)`` could otherwise close the wrapper the service
  adds and smuggle a relation past the allow-list),
* no function that has side effects outside the transaction or runs SQL given as text
  (``pg_terminate_backend``, ``dblink``, ``lo_*``, ``query_to_xml``, ``ts_stat``, advisory locks,
  …). Such a name is refused wherever it appears as a word or quoted identifier, not only before
  ``(``: PostgreSQL also calls a one-argument function with attribute notation, so
  ``('/etc/passwd'::text).pg_read_file`` is ``pg_read_file('/etc/passwd')``. A column or alias
  that happens to carry such a name has to be renamed (for example in a view),
* no bind parameters (``$1``) and no ``U&`` escapes,
* when a ``tables`` allow-list is configured, every relation the query reads (``FROM``/``JOIN``/
  ``TABLE`` items, CTE names excepted within their scope) must be on it, and only built-in
  functions may be called: a schema-qualified call must name ``pg_catalog``
  (``FROM other.fn()``, ``ROWS FROM (other.fn())`` and ``LATERAL other.fn()`` are refused, in
  every position). A function is code that can read any table its owner can, so it would
  bypass the allow-list. Unqualified names resolve through the pinned ``search_path``
  (``public, pg_catalog``); :attr:`SafeQuery.function_names` lists every name used as a function
  (before ``(`` or after ``.``), and the service refuses the query when one of them names a
  function outside ``pg_catalog`` on that path (a catalogue look-up the tokenizer cannot do).
  Operators, casts and type input functions that users defined are not checked.

Comments are removed from the SQL that is executed, so a comment can never swallow the wrapper
that the service adds (``SELECT * FROM (<q>) AS _axis_q LIMIT $1`` inside ``BEGIN READ ONLY``).

This gate is defence in depth, not the security boundary: connect with a least-privilege role
that can only ``SELECT`` the tables users may see. Functions the role can execute, including
user-defined ``SECURITY DEFINER`` functions, run with whatever rights they were given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.errors import Unprocessable

WHITESPACE = frozenset(" \t\n\r\f\v")

# Keywords that never belong in a read-only SELECT: statements (top level or inside WITH) and
# clauses that write (SELECT ... INTO).
FORBIDDEN_KEYWORDS = frozenset(
    {
        "insert", "update", "delete", "merge", "drop", "create", "alter", "truncate", "copy",
        "grant", "revoke", "vacuum", "analyze", "analyse", "reindex", "lock",
        "call", "do", "execute", "prepare", "deallocate", "listen", "unlisten", "notify", "set",
        "reset", "discard", "into",
    }
)  # fmt: skip

# Functions with effects outside the read-only transaction, or that execute SQL passed as text.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_start_backup",
        "pg_stop_backup", "pg_backup_start", "pg_backup_stop", "pg_wal_replay_pause",
        "pg_wal_replay_resume", "pg_log_backend_memory_contexts", "pg_read_file",
        "pg_read_binary_file", "pg_stat_file", "pg_file_write", "pg_file_rename",
        "pg_file_unlink", "pg_file_sync", "set_config", "pg_notify", "pg_logical_emit_message",
        "pg_import_system_collations", "pg_drop_replication_slot", "ts_stat", "ts_rewrite",
        "connectby", "nextval", "setval", "pg_sequence_last_value",
        # index and statistics maintenance that writes despite READ ONLY (table owners only)
        "gin_clean_pending_list", "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range",
        "pg_stat_statements_reset",
    }
)  # fmt: skip
FORBIDDEN_FUNCTION_PREFIXES = (
    "pg_logical_slot_",  # consumes a replication slot's changes
    "dblink",
    "lo_",
    "pg_advisory",
    "pg_try_advisory",
    "pg_ls_",
    "pg_create_",
    "pg_copy_",
    "pg_replication_",
    "pg_stat_reset",
    "crosstab",
    "query_to_xml",
    "cursor_to_xml",
)
FORBIDDEN_FUNCTION_INFIXES = ("_to_xml",)

# Keywords that end a FROM list at the same nesting level.
_FROM_ENDERS = frozenset(
    {"where", "group", "having", "window", "order", "limit", "offset", "fetch", "for", "union",
     "intersect", "except", "select", "returning"}
)  # fmt: skip
_QUERY_STARTERS = frozenset({"select", "with", "values", "table"})


def _ascii_lower(text: str) -> str:
    """PostgreSQL folds only ASCII letters of unquoted identifiers."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _is_ident_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z") or ord(c) >= 0x80


def _is_ident_char(c: str) -> bool:
    return _is_ident_start(c) or ("0" <= c <= "9") or c == "$"


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` in word/qident/string/number/param/op/comment/space."""

    kind: str
    text: str
    start: int
    end: int

    @property
    def word(self) -> str:
        """Folded keyword/identifier text for words; exact text for quoted identifiers."""
        if self.kind == "word":
            return _ascii_lower(self.text)
        if self.kind == "qident":
            return self.text[1:-1].replace('""', '"')
        return ""


class SqlSyntaxError(Unprocessable):
    """The SQL could not be tokenised (unterminated literal, comment or identifier)."""


def tokenize(sql: str) -> list[Token]:
    """Split SQL into tokens with PostgreSQL's lexical rules; raises on unterminated constructs."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        start = i
        if c in WHITESPACE:
            while i < n and sql[i] in WHITESPACE:
                i += 1
            tokens.append(Token("space", sql[start:i], start, i))
        elif c == "-" and nxt == "-":
            while i < n and sql[i] not in "\r\n":
                i += 1
            tokens.append(Token("comment", sql[start:i], start, i))
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise SqlSyntaxError("Unterminated block comment in query")
            tokens.append(Token("comment", sql[start:i], start, i))
        elif c == "'":
            i = _scan_quoted(sql, i, "'", backslash=False)
            tokens.append(Token("string", sql[start:i], start, i))
        elif c in "eE" and nxt == "'":
            i = _scan_quoted(sql, i + 1, "'", backslash=True)
            tokens.append(Token("string", sql[start:i], start, i))
        elif c in "bBxXnN" and nxt == "'":
            i = _scan_quoted(sql, i + 1, "'", backslash=False)
            tokens.append(Token("string", sql[start:i], start, i))
        elif c in "uU" and nxt == "&" and i + 2 < n and sql[i + 2] in "'\"":
            raise Unprocessable("Unicode-escape literals and identifiers (U&'...') are not allowed")
        elif c == '"':
            i = _scan_quoted(sql, i, '"', backslash=False)
            if i - start == 2:
                raise SqlSyntaxError("Zero-length quoted identifier in query")
            tokens.append(Token("qident", sql[start:i], start, i))
        elif c == "$" and nxt.isdigit():
            i += 1
            while i < n and sql[i].isdigit():
                i += 1
            tokens.append(Token("param", sql[start:i], start, i))
        elif c == "$":
            end_tag = _dollar_tag(sql, i)
            if end_tag is None:
                tokens.append(Token("op", c, start, i + 1))
                i += 1
            else:
                close = sql.find(end_tag, i + len(end_tag))
                if close < 0:
                    raise SqlSyntaxError("Unterminated dollar-quoted string in query")
                i = close + len(end_tag)
                tokens.append(Token("string", sql[start:i], start, i))
        elif c.isdigit() or (c == "." and nxt.isdigit()):
            i = _scan_number(sql, i)
            tokens.append(Token("number", sql[start:i], start, i))
        elif _is_ident_start(c):
            while i < n and _is_ident_char(sql[i]):
                i += 1
            tokens.append(Token("word", sql[start:i], start, i))
        else:
            tokens.append(Token("op", c, start, i + 1))
            i += 1
    return tokens


def _scan_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    """Index just past the literal that opens at ``sql[i] == quote``."""
    n = len(sql)
    i += 1
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    kind = "identifier" if quote == '"' else "string literal"
    raise SqlSyntaxError(f"Unterminated quoted {kind} in query")


def _dollar_tag(sql: str, i: int) -> str | None:
    """The ``$tag$`` opening at ``i``, or None when ``$`` does not start a dollar quote."""
    j = i + 1
    n = len(sql)
    if j < n and sql[j] == "$":
        return "$$"
    if j < n and (_is_ident_start(sql[j])):
        j += 1
        while j < n and (_is_ident_start(sql[j]) or sql[j].isdigit()):
            j += 1
        if j < n and sql[j] == "$":
            return sql[i : j + 1]
    return None


def _scan_number(sql: str, i: int) -> int:
    """Decimal number: digits, optional fraction, optional exponent (never swallows letters)."""
    n = len(sql)
    while i < n and sql[i].isdigit():
        i += 1
    if i < n and sql[i] == "." and not sql.startswith("..", i):
        i += 1
        while i < n and sql[i].isdigit():
            i += 1
    if i < n and sql[i] in "eE":
        j = i + 1
        if j < n and sql[j] in "+-":
            j += 1
        if j < n and sql[j].isdigit():
            i = j
            while i < n and sql[i].isdigit():
                i += 1
    return i


@dataclass(frozen=True)
class RelationRef:
    """A relation the query reads: ``schema`` is None when unqualified."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass
class SafeQuery:
    """A validated query: the SQL to run (comments removed), the relations it reads, the names it
    uses as functions and whether its outermost query has an ``ORDER BY``."""

    sql: str
    relations: list[RelationRef] = field(default_factory=list)
    function_names: set[str] = field(default_factory=set)
    ordered: bool = False


@dataclass
class _Frame:
    """One parenthesis level while scanning for relation references."""

    is_query: bool
    in_from: bool = False
    expect_table: bool = False
    in_with: bool = False
    cte_state: str = ""  # "", "name", "after_name", "after_as"
    pending_cte: str | None = None
    recursive: bool = False
    ctes: set[str] = field(default_factory=set)
    commit_cte: tuple[_Frame, str] | None = None


def validate_select(sql: str, allowed_tables: list[str] | None = None) -> SafeQuery:
    """Validate one read-only SELECT/WITH statement; raise ``Unprocessable`` (422) otherwise.

    Linear in the query's length (callers still run it in a worker thread); at most
    MAX_QUERY_CHARS characters and MAX_NESTING nested brackets.
    """
    if sql is None or not sql.strip():
        raise Unprocessable("Query cannot be empty")
    if len(sql) > MAX_QUERY_CHARS:
        raise Unprocessable(f"The query is longer than {MAX_QUERY_CHARS:,} characters; shorten it")
    if "\x00" in sql:
        raise Unprocessable("The query contains a NUL character (\\u0000), which PostgreSQL does not accept")
    tokens = tokenize(sql)
    # Drop trailing whitespace, comments and semicolons.
    end = len(tokens)
    while end and (tokens[end - 1].kind in ("space", "comment") or tokens[end - 1].text == ";"):
        end -= 1
    tokens = tokens[:end]
    sig = [t for t in tokens if t.kind not in ("space", "comment")]
    if not sig:
        raise Unprocessable("Query cannot be empty")
    if any(t.kind == "op" and t.text == ";" for t in sig):
        raise Unprocessable("Multi-statement queries are not allowed")
    if any(t.kind == "param" for t in sig):
        raise Unprocessable("Bind parameters ($1, $2, ...) are not allowed in queries")
    first = next((t for t in sig if not (t.kind == "op" and t.text == "(")), None)
    if first is None or first.kind != "word" or first.word not in ("select", "with"):
        raise Unprocessable("Only SELECT queries are allowed (the query must start with SELECT or WITH)")
    _check_brackets(sig)
    _check_keywords(sig)
    _check_functions(sig)
    relations = _relations(sig)
    if allowed_tables:
        _check_allow_list(relations, allowed_tables)
        _check_function_schemas(sig)
    cleaned = "".join(" " if t.kind == "comment" else t.text for t in tokens).strip()
    return SafeQuery(
        sql=cleaned, relations=relations, function_names=_function_names(sig), ordered=_has_top_level_order_by(sig)
    )


_CLOSERS = {")": "(", "]": "["}
MAX_QUERY_CHARS = 100_000
MAX_NESTING = 200


def _check_brackets(sig: list[Token]) -> None:
    """Every ``)``/``]`` closes the innermost open ``(``/``[``, nothing stays open, nesting ≤ MAX_NESTING."""
    stack: list[Token] = []
    for tok in sig:
        if tok.kind != "op":
            continue
        if tok.text in ("(", "["):
            stack.append(tok)
            if len(stack) > MAX_NESTING:
                raise Unprocessable(
                    f"The query nests brackets more than {MAX_NESTING} deep (at character {tok.start + 1}); simplify it"
                )
        elif tok.text in _CLOSERS:
            if not stack or stack[-1].text != _CLOSERS[tok.text]:
                raise Unprocessable(
                    f"Unbalanced parentheses: '{tok.text}' at character {tok.start + 1} has no matching "
                    f"'{_CLOSERS[tok.text]}'"
                )
            stack.pop()
    if stack:
        tok = stack[-1]
        closer = ")" if tok.text == "(" else "]"
        raise Unprocessable(
            f"Unbalanced parentheses: '{tok.text}' at character {tok.start + 1} is never closed with '{closer}'"
        )


def _function_names(sig: list[Token]) -> set[str]:
    """Names that may call a function: a word or quoted identifier before ``(`` or after ``.``
    (``pg_catalog.name`` excepted, it cannot resolve elsewhere)."""
    names: set[str] = set()
    for idx, tok in enumerate(sig):
        if tok.kind not in ("word", "qident"):
            continue
        before_paren = idx + 1 < len(sig) and sig[idx + 1].kind == "op" and sig[idx + 1].text == "("
        after_dot = idx > 0 and sig[idx - 1].kind == "op" and sig[idx - 1].text == "."
        in_catalog = after_dot and idx > 1 and sig[idx - 2].word == "pg_catalog"
        if (before_paren or after_dot) and not in_catalog:
            names.add(tok.word)
    return names


def _has_top_level_order_by(sig: list[Token]) -> bool:
    """True when the outermost query (inside any parentheses that wrap all of it) has ORDER BY."""
    closes = _bracket_pairs(sig)
    lo, hi = 0, len(sig)
    while hi - lo >= 2 and sig[lo].text == "(" and sig[hi - 1].text == ")" and closes.get(lo) == hi - 1:
        lo, hi = lo + 1, hi - 1
    depth = 0
    for idx in range(lo, hi):
        tok = sig[idx]
        if tok.kind == "op" and tok.text in ("(", "["):
            depth += 1
        elif tok.kind == "op" and tok.text in (")", "]"):
            depth -= 1
        elif (
            depth == 0
            and tok.kind == "word"
            and tok.word == "order"
            and not _is_label(sig, idx)
            and idx + 1 < hi
            and sig[idx + 1].word == "by"
        ):
            return True
    return False


def _bracket_pairs(sig: list[Token]) -> dict[int, int]:
    """Index of each opening bracket → index of the bracket that closes it (one pass; brackets balance)."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    for idx, tok in enumerate(sig):
        if tok.kind == "op" and tok.text in ("(", "["):
            opened.append(idx)
        elif tok.kind == "op" and tok.text in (")", "]") and opened:
            pairs[opened.pop()] = idx
    return pairs


def _is_label(sig: list[Token], idx: int) -> bool:
    """True for a word used as a name: after ``.`` (qualified) or after ``AS`` (an alias)."""
    if idx == 0:
        return False
    prev = sig[idx - 1]
    if prev.text == ".":
        return True
    return prev.kind == "word" and prev.word == "as" and sig[idx].word not in ("not", "materialized")


def _names_back(sig: list[Token], idx: int) -> int:
    """Index before a comma-separated list of (qualified, maybe quoted) column names ending at ``idx - 1``."""
    j = idx - 1
    while j >= 0:
        tok = sig[j]
        if tok.kind in ("word", "qident") and tok.word not in FORBIDDEN_KEYWORDS:
            j -= 1
            if j >= 0 and sig[j].text in (",", "."):
                j -= 1
                continue
        return j
    return j


def _is_search_cycle_set(sig: list[Token], idx: int) -> bool:
    """True for the ``SET`` of a recursive CTE's ``SEARCH … FIRST BY cols SET col`` or ``CYCLE cols SET col``."""
    j = _names_back(sig, idx)
    if j == idx - 1 or j < 0:
        return False
    if sig[j].word == "cycle":
        return True
    words = [t.word for t in sig[max(j - 3, 0) : j + 1]]
    return words in (["search", "breadth", "first", "by"], ["search", "depth", "first", "by"])


def _check_keywords(sig: list[Token]) -> None:
    for idx, tok in enumerate(sig):
        if tok.kind != "word" or _is_label(sig, idx):
            continue
        word = tok.word
        if word == "set" and _is_search_cycle_set(sig, idx):
            continue
        if word == "for":
            following = [t.word for t in sig[idx + 1 : idx + 4]]
            if following[:1] in (["update"], ["share"]) or following[:2] in (["no", "key"], ["key", "share"]):
                raise Unprocessable("Row-locking clauses (FOR UPDATE / FOR SHARE) are not allowed")
        if word in FORBIDDEN_KEYWORDS:
            raise Unprocessable(
                f"Only SELECT queries are allowed: '{tok.text.upper()}' is not permitted "
                "(double-quote a column that uses this name)"
            )


def _function_forbidden(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in FORBIDDEN_FUNCTIONS
        or lowered.startswith(FORBIDDEN_FUNCTION_PREFIXES)
        or any(part in lowered for part in FORBIDDEN_FUNCTION_INFIXES)
    )


def _check_functions(sig: list[Token]) -> None:
    """Refuse a forbidden function name in any position: ``f(x)``, ``s.f(x)`` and ``(x).f`` alike."""
    for tok in sig:
        if tok.kind in ("word", "qident") and _function_forbidden(tok.word):
            raise Unprocessable(
                f"Function '{tok.word}' is not allowed in read-only queries (the name is refused wherever it "
                "appears, including attribute notation such as (x).name; rename a column that uses it)"
            )


def _check_function_schemas(sig: list[Token]) -> None:
    """With an allow-list: a schema-qualified function call must name ``pg_catalog``."""
    for idx, tok in enumerate(sig):
        if not (tok.kind == "op" and tok.text == "(") or idx < 3:
            continue
        name, dot, schema = sig[idx - 1], sig[idx - 2], sig[idx - 3]
        if (
            name.kind in ("word", "qident")
            and dot.kind == "op"
            and dot.text == "."
            and schema.kind in ("word", "qident")
            and schema.word != "pg_catalog"
        ):
            raise Unprocessable(
                f"Function '{schema.word}.{name.word}' is not allowed: with a tables allow-list configured, "
                "only built-in (pg_catalog) functions may be called"
            )


def _read_qualified(sig: list[Token], idx: int) -> tuple[list[str], int]:
    """Parts of a dotted name starting at ``idx`` and the index after it."""
    parts = [sig[idx].word]
    idx += 1
    while idx + 1 < len(sig) and sig[idx].text == "." and sig[idx + 1].kind in ("word", "qident"):
        parts.append(sig[idx + 1].word)
        idx += 2
    return parts, idx


def _skip_search_cycle(sig: list[Token], idx: int) -> int:
    """Index after ``SEARCH {BREADTH|DEPTH} FIRST BY cols SET col`` or
    ``CYCLE cols SET col [TO value DEFAULT value] USING col`` starting at ``idx``; anything else → 422."""
    n = len(sig)

    def take(j: int, kinds: tuple[str, ...], words: tuple[str, ...] = ()) -> int:
        if j < n and sig[j].kind in kinds and (not words or sig[j].word in words):
            return j + 1
        raise Unprocessable("Could not read the SEARCH/CYCLE clause of a recursive WITH query")

    def names(j: int) -> int:
        j = take(j, ("word", "qident"))
        while j < n and sig[j].text == ",":
            j = take(j + 1, ("word", "qident"))
        return j

    if sig[idx].word == "search":
        j = take(idx + 1, ("word",), ("breadth", "depth"))
        j = take(take(j, ("word",), ("first",)), ("word",), ("by",))
        return take(take(names(j), ("word",), ("set",)), ("word", "qident"))
    j = take(take(names(idx + 1), ("word",), ("set",)), ("word", "qident"))
    if j < n and sig[j].kind == "word" and sig[j].word == "to":
        j = take(j + 1, ("string", "number", "word"))
        j = take(take(j, ("word",), ("default",)), ("string", "number", "word"))
    return take(take(j, ("word",), ("using",)), ("word", "qident"))


def _relations(sig: list[Token]) -> list[RelationRef]:
    """Relations read by FROM/JOIN items and ``TABLE name``; CTE references are left out."""
    stack = [_Frame(is_query=True)]
    found: list[RelationRef] = []
    n = len(sig)

    def is_cte(name: str) -> bool:
        return any(name in frame.ctes for frame in stack)

    def record(parts: list[str]) -> None:
        if len(parts) == 1 and is_cte(parts[0]):
            return
        schema = parts[-2] if len(parts) >= 2 else None
        found.append(RelationRef(schema, parts[-1]))

    idx = 0
    while idx < n:
        tok = sig[idx]
        frame = stack[-1]
        word = tok.word if tok.kind == "word" and not _is_label(sig, idx) else ""
        if frame.in_with and frame.cte_state == "" and tok.text != "," and word not in ("search", "cycle"):
            # After a CTE body only ``,`` (another CTE) or SEARCH/CYCLE continue the WITH list; anything
            # else (SELECT, VALUES, TABLE or a parenthesised main query) is the main query, whose commas
            # (select list, ORDER BY) must not name CTEs.
            frame.in_with = False
        if word in ("select", "values"):
            frame.is_query = True
        if tok.text == "(" and tok.kind == "op":
            following = sig[idx + 1] if idx + 1 < n else None
            starts_query = following is not None and following.kind == "word" and following.word in _QUERY_STARTERS
            child = _Frame(is_query=starts_query)
            if frame.cte_state == "after_as" and frame.pending_cte is not None:
                child.commit_cte = (frame, frame.pending_cte)
                frame.cte_state, frame.pending_cte = "", None
            elif frame.cte_state == "after_name":
                frame.cte_state = "in_cols"
            elif frame.expect_table:
                frame.expect_table = False
                if not starts_query:
                    child.is_query = True
                    child.in_from = True
                    child.expect_table = True
            stack.append(child)
            idx += 1
            continue
        if tok.text == ")" and tok.kind == "op":
            if len(stack) > 1:
                closed = stack.pop()
                if closed.commit_cte is not None:
                    owner, name = closed.commit_cte
                    owner.ctes.add(name)
                parent = stack[-1]
                if parent.cte_state == "in_cols":
                    parent.cte_state = "after_name"
            idx += 1
            continue
        # WITH list bookkeeping
        at_start = idx == 0 or sig[idx - 1].text == "("
        if word == "with" and at_start and frame.cte_state == "":
            frame.in_with, frame.cte_state = True, "name"
            idx += 1
            continue
        if frame.in_with:
            if frame.cte_state == "name" and word == "recursive":
                frame.recursive = True
                idx += 1
                continue
            if frame.cte_state == "name" and tok.kind in ("word", "qident"):
                name = tok.word
                frame.pending_cte = name
                frame.cte_state = "after_name"
                if frame.recursive:
                    frame.ctes.add(name)
                idx += 1
                continue
            if frame.cte_state == "after_name" and word == "as":
                frame.cte_state = "after_as"
                idx += 1
                continue
            if frame.cte_state == "after_as" and word in ("not", "materialized"):
                idx += 1
                continue
            if frame.cte_state == "" and word in ("search", "cycle"):
                # A recursive CTE's SEARCH/CYCLE clause: its column list's commas do not start a CTE.
                idx = _skip_search_cycle(sig, idx)
                continue
            if frame.cte_state == "" and tok.text == ",":
                frame.cte_state = "name"
                idx += 1
                continue
        # TABLE name (a query form)
        if word == "table" and idx + 1 < n and sig[idx + 1].kind in ("word", "qident"):
            parts, nxt = _read_qualified(sig, idx + 1)
            record(parts)
            idx = nxt
            continue
        if not frame.is_query:
            idx += 1
            continue
        if word == "from":
            prev = sig[idx - 1].word if idx >= 1 and sig[idx - 1].kind == "word" else ""
            prev2 = sig[idx - 2].word if idx >= 2 and sig[idx - 2].kind == "word" else ""
            if not (prev == "distinct" and prev2 in ("is", "not")):
                frame.in_from, frame.expect_table = True, True
            idx += 1
            continue
        if word in _FROM_ENDERS:
            frame.in_from, frame.expect_table = False, False
            idx += 1
            continue
        if frame.in_from and word == "join":
            frame.expect_table = True
            idx += 1
            continue
        if frame.in_from and word in ("on", "using"):
            frame.expect_table = False
            idx += 1
            continue
        if frame.in_from and tok.text == "," and tok.kind == "op":
            frame.expect_table = True
            idx += 1
            continue
        if frame.expect_table:
            if word in ("lateral", "only"):
                idx += 1
                continue
            if word == "rows" and idx + 1 < n and sig[idx + 1].word == "from":
                idx += 2
                continue
            if tok.kind in ("word", "qident"):
                parts, nxt = _read_qualified(sig, idx)
                frame.expect_table = False
                if not (nxt < n and sig[nxt].text == "("):
                    record(parts)
                idx = nxt
                continue
            frame.expect_table = False
        idx += 1
    return found


def _parse_allowed(entry: str) -> tuple[str | None, str]:
    """``schema.table`` / ``table`` (quoted parts kept exact, unquoted parts folded)."""
    toks = [t for t in tokenize(entry.strip()) if t.kind not in ("space", "comment")]
    parts = [t.word for t in toks if t.kind in ("word", "qident")]
    if not parts:
        return None, entry.strip()
    return (parts[-2] if len(parts) >= 2 else None), parts[-1]


def table_allowed(schema: str | None, name: str, allowed_tables: list[str]) -> bool:
    """True when ``schema.name`` (unqualified = ``public``) is on the allow-list.

    An entry ``table`` allows that table in ``public``; ``schema.table`` allows exactly that
    table (and the unqualified name when the schema is ``public``).
    """
    schema = schema or "public"
    for entry in allowed_tables:
        try:
            e_schema, e_name = _parse_allowed(entry)
        except Unprocessable:
            continue
        if e_name == name and (e_schema or "public") == schema:
            return True
    return False


def _check_allow_list(relations: list[RelationRef], allowed_tables: list[str]) -> None:
    for ref in relations:
        if not table_allowed(ref.schema, ref.name, allowed_tables):
            raise Unprocessable(f"Table '{ref}' is not in the configured tables allow-list")
