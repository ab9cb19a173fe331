"""Search by what a task was called with: the `q=` of the invocations list and the runs table.

Flower's task search grammar (flower/utils/search.py), on tasktrail's log:

    order 1234                    terms separated by spaces must all match (AND; `AND` may be written)
    invoice OR receipt            either (upper-case OR; AND binds tighter), parentheses group
    "connection refused"          a quoted phrase is one term; \\" and \\\\ inside quotes are " and \\
    args:acme                     the arguments contain "acme"
    kwargs:order=1234             the arguments hold the pair order=1234 (below)
    kwargs:acme                   the arguments contain "acme" (as args:)
    result:paid  error:timeout    the result / the error type or message contain it
    state:FAILED                  the status filter (status_mode=history: a status it ever had)
    name:shop.pay                 the task name contains it
    1234                          free text: the id, the task name, arguments, result or error contain it

A prefix is a word of letters (and `_`) before a single unquoted colon; an unknown one is an error (quote
a phrase holding a colon), and `python::app.add` (a rustvello task name) is free text. `state:` takes a
status or a comma list of them.

Every comparison ignores case. "Contains" is a plain substring test (no wildcards: %, _ and \\ are
literal) of the value as stored, or, for a JSON value holding escapes (a backslash), of its compact JSON
with the escapes decoded (so `args:müller` finds `{"name": "M\\u00fcller"}`, `args:c\\d` finds `{"p": "c\\\\d"}`).

`kwargs:KEY=VALUE` (split at the first `=`; KEY and VALUE trimmed, both non-empty):
- arguments that are a JSON object or array: a member, at any depth, whose key is KEY and whose
  value is VALUE: a string by its text, a number, true, false or null by its JSON text, an object or
  array by its compact JSON; array elements have no key (`kwargs:0=x` never matches one);
- any other arguments (plain text such as pynenc's `{order:1234, customer:ACME}`, Python's
  `{'order': 1234}`, or `order=1234&x=1`): KEY, optionally quoted (' or "), not preceded by a letter,
  digit or `_`; then `:` or `=` with optional spaces; then VALUE, optionally quoted, followed by the
  end or one of whitespace , ; & ) } ].

Values are read from the transitions recorded in the search window (arguments ride on REGISTERED,
results on SUCCESS, errors on FAILED and RETRY), each term a scan of the window's transitions only, values bound
as parameters.
A malformed query raises BadRequest (the 400 of the one error shape).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Optional, Union

from .errors import BadRequest
from .params import iso, statuses as parse_statuses, summary_window

MAX_QUERY_CHARS = 2048
MAX_TERMS = 32
MAX_DEPTH = 5
SEARCH_WINDOW = timedelta(hours=24)  # the values' window when the list gives no since
# prefix -> the transitions columns it searches ("" is free text: these and the id and task name).
VALUE_COLUMNS = {"args": ("arguments",), "kwargs": ("arguments",), "result": ("result",),
                 "error": ("error_type", "error_message"), "": ("arguments", "result", "error_type", "error_message")}
PREFIXES = ("args", "kwargs", "result", "error", "state", "name")
HELP = ('Search: words must all match (AND; OR and parentheses too), "quoted phrase", args:acme, '
        'kwargs:order=1234, result:paid, error:timeout, state:FAILED, name:shop.pay; values recorded in the '
        'window (default the last 24 h, since=all for all).')


@dataclass(frozen=True)
class Term:
    """One search term: `field` is a prefix ("" for free text); `key` set for kwargs:KEY=VALUE."""
    field: str
    value: str
    key: Optional[str] = None
    statuses: tuple = ()


@dataclass(frozen=True)
class Node:
    op: str  # "AND" | "OR"
    children: tuple


Query = Union[Term, Node]


# --- parsing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # TERM | AND | OR | ( | ) | EOF
    text: str
    pos: int
    prefix_end: int = -1  # index of the ':' ending an unquoted prefix, else -1


class BadSearch(BadRequest):
    """A malformed search (a BadRequest: the 400 of the one error shape); pages show it under the search box."""


def _bad(message: str, pos: Optional[int] = None) -> BadSearch:
    where = "" if pos is None else f" at character {pos + 1}"
    return BadSearch(f"search q: {message}{where}. {HELP}")


def _word(text: str, i: int) -> tuple[str, int, int, bool]:
    """The term starting at `i`: (its text, the index after it, the index of an unquoted prefix colon
    in the text or -1, whether any part was quoted)."""
    out: list[str] = []
    in_quote = quoted = False
    colon = -1
    opened = i   # where the quote still open began (the error names it)
    while i < len(text):
        ch = text[i]
        if ch == "\\" and in_quote and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted, in_quote = True, not in_quote
            opened = i
            i += 1
            continue
        if not in_quote and (ch.isspace() or ch in "()"):
            break
        if ch == ":" and colon < 0 and not quoted:
            colon = len(out)
        out.append(ch)
        i += 1
    if in_quote:
        raise _bad("unclosed quote", opened)
    return "".join(out), i, colon, quoted


def tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text[i] in "()":
            out.append(_Token(text[i], text[i], i))
            i += 1
            continue
        word, end, colon, quoted = _word(text, i)
        if not quoted and word in ("AND", "OR"):
            out.append(_Token(word, word, i))
        elif not quoted and word == "NOT":
            raise _bad("NOT is not supported", i)
        elif not word:
            raise _bad("empty quoted phrase", i)
        else:
            out.append(_Token("TERM", word, i, colon))
        i = end
    return out + [_Token("EOF", "", len(text))]


def term(tok: _Token) -> Term:
    """A term from its token: a known prefix, or free text; BadRequest for an unknown prefix or an empty value."""
    text, field = tok.text, ""
    if tok.prefix_end >= 0 and text[tok.prefix_end + 1:tok.prefix_end + 2] != ":":  # `python::app.add` is a name
        name = text[:tok.prefix_end]
        if name.lower() in PREFIXES:
            field, text = name.lower(), text[tok.prefix_end + 1:]
        elif name.replace("_", "").isalpha():
            raise _bad(f"unknown prefix {name + ':'!r}; prefixes are {', '.join(p + ':' for p in PREFIXES)} "
                       "(quote a phrase holding a colon)", tok.pos)
    if not text.strip():
        raise _bad(f"{field}: needs a value", tok.pos)
    if field == "state":
        try:
            return Term("state", text, statuses=tuple(parse_statuses([text])))
        except BadRequest as e:
            raise _bad(f"state: {e}", tok.pos) from None
    if field == "kwargs" and "=" in text:
        key, value = (s.strip() for s in text.split("=", 1))
        if not key or not value:
            raise _bad("kwargs:KEY=VALUE needs a key and a value", tok.pos)
        return Term("kwargs", value, key=key)
    return Term(field, text)


class _Parser:
    def __init__(self, toks: list[_Token]):
        self.toks, self.i, self.terms = toks, 0, 0

    @property
    def cur(self) -> _Token:
        return self.toks[self.i]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def any_of(self, depth: int) -> Query:
        children = [self.all_of(depth)]
        while self.cur.kind == "OR":
            op = self.take()
            if self.cur.kind in ("EOF", ")", "AND", "OR"):
                raise _bad("OR must be followed by a term", op.pos)
            children.append(self.all_of(depth))
        return children[0] if len(children) == 1 else Node("OR", tuple(children))

    def all_of(self, depth: int) -> Query:
        children = [self.one(depth)]
        while self.cur.kind not in ("EOF", ")", "OR"):
            if self.cur.kind == "AND":
                op = self.take()
                if self.cur.kind in ("EOF", ")", "AND", "OR"):
                    raise _bad("AND must be followed by a term", op.pos)
            children.append(self.one(depth))
        return children[0] if len(children) == 1 else Node("AND", tuple(children))

    def one(self, depth: int) -> Query:
        tok = self.take()
        if tok.kind == "(":
            if depth >= MAX_DEPTH:
                raise _bad(f"more than {MAX_DEPTH} levels of parentheses", tok.pos)
            if self.cur.kind == ")":
                raise _bad("empty parentheses", tok.pos)
            inner = self.any_of(depth + 1)
            if self.take().kind != ")":
                raise _bad("unclosed parenthesis", tok.pos)
            return inner
        if tok.kind != "TERM":
            raise _bad(f"unexpected {tok.text or 'end'!r}", tok.pos)
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _bad(f"more than {MAX_TERMS} terms", tok.pos)
        return term(tok)


def parse(text: Optional[str]) -> Optional[Query]:
    """The query `text` as a tree of Terms and AND/OR Nodes; None for no query (None or blank).
    Raises BadRequest (what is wrong, where, and the grammar) for a malformed one."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise _bad(f"longer than {MAX_QUERY_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("not valid text (a lone surrogate)") from None
    p = _Parser(tokens(text))
    out = p.any_of(0)
    if p.cur.kind != "EOF":
        raise _bad(f"unexpected {p.cur.text!r}", p.cur.pos)
    return out


def reads_values(query: Optional[Query]) -> bool:
    """Whether the query reads values from transitions (any term but state: and name:)."""
    if query is None:
        return False
    if isinstance(query, Node):
        return any(reads_values(c) for c in query.children)
    return query.field not in ("state", "name")


# --- SQL ---------------------------------------------------------------------------------------------
def _contains(col: str) -> str:
    """SQL: `col` contains the bound (lower-cased) term, as stored or as JSON with its escapes decoded."""
    return (f"(contains(lower({col}), lower(?)) OR (contains({col}, '\\') AND "
            f"CASE WHEN json_valid({col}) THEN contains(lower(json({col})::VARCHAR), lower(?)) ELSE false END))")


def _re(text: str) -> str:
    """`text` as an RE2 literal: ASCII punctuation and spaces as \\x{..}, everything else as itself."""
    return "".join(c if c.isalnum() or ord(c) > 127 else f"\\x{{{ord(c):x}}}" for c in text)


def pair_regex(key: str, value: str) -> str:
    """The RE2 pattern of kwargs:KEY=VALUE in plain-text arguments (see the module docstring)."""
    q = "[\\x{27}\"]?"
    return (f"(?i)(^|[^\\pL\\pN_]){q}{_re(key)}{q}\\s*[:=]\\s*{q}{_re(value)}{q}($|[\\s,;&)}}\\]])")


_J = "CASE WHEN json_valid(t.arguments) THEN t.arguments END"


def _pair(t: Term, window: str, wparams: list) -> tuple[str, list]:
    pre = ("((contains(lower(t.arguments), lower(?)) AND contains(lower(t.arguments), lower(?))) "
           "OR contains(t.arguments, '\\'))")
    structured = f"json_type({_J}) IN ('OBJECT', 'ARRAY')"
    # The window and the cheap tests first (a subquery), JSON trees only for the rows they leave.
    rows = f"SELECT t.invocation_id, t.arguments FROM transitions t WHERE {window} AND {pre} AND {structured}"
    as_json = (f"SELECT t.invocation_id FROM ({rows}) t, json_tree({_J}) e "
               "WHERE e.fullkey <> e.path || '[' || e.key || ']' AND lower(e.key) = lower(?) "
               "AND lower(CASE WHEN e.type = 'VARCHAR' THEN e.value->>'$' ELSE e.value::VARCHAR END) = lower(?)")
    as_text = (f"SELECT t.invocation_id FROM transitions t WHERE {window} AND {pre} "
               f"AND coalesce(json_type({_J}), '') NOT IN ('OBJECT', 'ARRAY') AND regexp_matches(t.arguments, ?)")
    sql = f"(invocation_id IN ({as_json}) OR invocation_id IN ({as_text}))"
    p = [t.key, t.value]
    return sql, [*wparams, *p, t.key, t.value, *wparams, *p, pair_regex(t.key, t.value)]


def _values(t: Term, window: str, wparams: list) -> tuple[str, list]:
    cols = VALUE_COLUMNS[t.field]
    match = " OR ".join(_contains(f"t.{c}") for c in cols)
    return (f"invocation_id IN (SELECT t.invocation_id FROM transitions t WHERE {window} AND ({match}))",
            [*wparams, *[t.value] * (2 * len(cols))])


@dataclass(frozen=True)
class Search:
    """A parsed query and the window its values are read in: transitions with since <= ts < until
    (None: unbounded on that side)."""
    query: Query
    since: Optional[datetime]
    until: Optional[datetime]


def prepare(text: Optional[str], since: Optional[str], until: Optional[str], now: datetime) -> Optional[Search]:
    """The search `text` asks for (None without one) with its window: the list's since/until where given,
    else the last SEARCH_WINDOW before `until` or `now`; `since=all` lifts it. Raises BadRequest."""
    query = parse(text)
    if query is None:
        return None
    lo, hi = summary_window(since, until, now, SEARCH_WINDOW)
    return Search(query, lo, hi)


def _window(s: Search) -> tuple[str, list]:
    conds, params = ["true"], []
    if s.since is not None:
        conds.append("t.ts >= ?")
        params.append(s.since)
    if s.until is not None:
        conds.append("t.ts < ?")
        params.append(s.until)
    return " AND ".join(conds), params


def _term_sql(t: Term, s: Search, mode: str, status_clause: Callable) -> tuple[str, list]:
    if t.field == "state":
        clauses, params = status_clause(list(t.statuses), mode, s.since)
        return f"({clauses[0]})", params
    if t.field == "name":
        return "contains(lower(coalesce(task_id, '')), lower(?))", [t.value]
    window, wparams = _window(s)
    if t.key is not None:
        return _pair(t, window, wparams)
    sql, params = _values(t, window, wparams)
    if t.field:
        return sql, params
    ids = "contains(lower(invocation_id), lower(?)) OR contains(lower(coalesce(task_id, '')), lower(?))"
    return f"({ids} OR {sql})", [t.value, t.value, *params]


def where_sql(s: Search, status_mode: str, status_clause: Callable, query: Optional[Query] = None) -> tuple[str, list]:
    """(SQL condition, bound parameters) over rows holding invocation_id, task_id and status (the
    invocation_state columns): the invocations the search finds. `status_clause(statuses, mode, since)`
    is the list's status filter (query/invocations.py), which state: terms use with `status_mode`. Every
    value is a bound parameter."""
    query = s.query if query is None else query
    if isinstance(query, Term):
        return _term_sql(query, s, status_mode, status_clause)
    parts, params = [], []
    for child in query.children:
        sql, p = where_sql(s, status_mode, status_clause, child)
        parts.append(sql)
        params += p
    return "(" + f" {query.op} ".join(parts) + ")", params


def with_window(found: Optional[Search], page: dict) -> dict:
    """`page` with `search_window` {since, until} (RFC 3339 or null) when a search read values, else as is."""
    if found is not None and reads_values(found.query):
        page["search_window"] = {"since": iso(found.since), "until": iso(found.until)}
    return page
