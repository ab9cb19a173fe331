"""The size of one value in ad-hoc SQL, bounded before DuckDB builds it.

DuckDB's memory limit bounds its buffers (sorts, joins, aggregates), not one value: a scalar that builds a
list or a string from a number (`SELECT range(0, 20000000)`, `repeat('x', 500000000)`,
`list_resize([1], 300000000)`, `lpad`, `printf('%500000000d', 1)`, `replace` with a long replacement)
allocates it whole, outside the limit, and nothing interrupts it until it returns (seconds, gigabytes).

So each SQL reader shadows those builders with TEMP macros of the same names (temp objects are found
before the built-ins) that work out the size of what the built-in would build from its arguments and
call the built-in (`system.main.<name>`) only when it fits: past the answer's byte cap (--sql-max-bytes) in characters,
or a sixteenth of it in list elements, the statement fails with an error that says which call, how big and
why. No answer could carry such a string anyway, and building a list costs DuckDB far more than its JSON. Table functions (`FROM range(...)`, `repeat_row`) are not affected: they stream
rows. query/sql_guard.py refuses a qualified call (`system.main.repeat(...)`) that would bypass these.

The sizes are worked out from the arguments' text, so one spelling fits every type DuckDB accepts (numbers,
timestamps with intervals, strings, lists, blobs); a volatile argument (random()) is evaluated again.
"""
from __future__ import annotations

from functools import lru_cache

# A list element's cost counted against the answer's byte cap: DuckDB builds and converts long lists
# slowly (a 20M-element range() took 25 s and 2.2 GB before any answer), so lists get a sixteenth of it.
ELEMENT_BYTES = 16

# Builders this module bounds; sql_guard refuses them called with a schema or catalog.
BOUNDED = ("range", "generate_series", "repeat", "lpad", "rpad", "list_resize", "array_resize", "bitstring",
           "replace", "regexp_replace", "printf", "format")


def _num(x: str) -> str:
    return f"try_cast(({x})::VARCHAR AS DOUBLE)"


def _len(x: str) -> str:
    return f"coalesce(length(({x})::VARCHAR), 0)"


def _count(a: str, b: str, step: str) -> str:
    """Elements of range(a, b, step) for numbers, or for times stepped by an interval."""
    times = (f"(epoch(try_cast(({b})::VARCHAR AS TIMESTAMPTZ)) - epoch(try_cast(({a})::VARCHAR AS TIMESTAMPTZ)))"
             f" / nullif(epoch(try_cast(({step})::VARCHAR AS INTERVAL)), 0)")
    return f"abs(coalesce(({_num(b)} - {_num(a)}) / nullif({_num(step)}, 0), {times}, 0))"


def _checked(name: str, size: str, what: str, arg: str, cap: int) -> str:
    """`arg`, or an error when `size` (a SQL expression) passes the cap on `what` (the answer's byte cap for
    characters and bits, a sixteenth of it for list elements)."""
    if what == "elements":
        cap, why = cap // ELEMENT_BYTES, f"--sql-max-bytes / {ELEMENT_BYTES}: each costs DuckDB that much to build and send"
    else:
        why = "--sql-max-bytes: no answer could carry more"
    message = f"'{name}() would build one value of ' || ({size})::HUGEINT || ' {what}; one value may hold at most {cap} ({why})'"
    return f"CASE WHEN ({size}) > {cap} THEN error({message}) ELSE {arg} END"


def _widths(fmt: str, args: list[str]) -> str:
    """The widest field a printf/format string asks for (digits after % or after : in {}), plus the
    largest number among the arguments when the width comes from one (`%*d`, `{:{}}`)."""
    literal = (f"coalesce(list_max(list_transform(regexp_extract_all(({fmt})::VARCHAR, "
               r"'(?:%[-+ #0]*|\{[^}]*?:[^}0-9]*|\.)([0-9]+)', 1), w -> try_cast(w AS DOUBLE))), 0)")
    if not args:
        return literal
    from_args = "greatest(" + ", ".join(f"coalesce({_num(a)}, 0)" for a in args) + ")"
    indirect = rf"regexp_matches(({fmt})::VARCHAR, '%[-+ #0]*\*|\{{[^}}]*\{{')"
    return f"{literal} + CASE WHEN {indirect} THEN {from_args} ELSE 0 END"


@lru_cache(maxsize=4)
def macros(cap: int) -> tuple[str, ...]:
    """CREATE TEMP MACRO statements, one per builder (its arities as overloads), bounding each value to
    `cap` elements or characters. Run them on every ad-hoc SQL reader's connection."""
    def rng(name: str) -> str:
        one = _checked(name, f"abs(coalesce({_num('b')}, 0))", "elements", "b", cap)
        two = _checked(name, _count("a", "b", "1"), "elements", "b", cap)
        three = _checked(name, _count("a", "b", "s"), "elements", "s", cap)
        return (f"CREATE OR REPLACE TEMP MACRO {name}(b) AS system.main.{name}({one}), "
                f"(a, b) AS system.main.{name}(a, {two}), (a, b, s) AS system.main.{name}(a, b, {three})")

    out = [rng("range"), rng("generate_series")]
    out.append("CREATE OR REPLACE TEMP MACRO repeat(s, n) AS system.main.repeat(s, "
               + _checked("repeat", f"{_num('n')} * greatest({_len('s')}, 1)", "characters", "n", cap) + ")")
    for name in ("lpad", "rpad"):
        out.append(f"CREATE OR REPLACE TEMP MACRO {name}(s, n, f) AS system.main.{name}(s, "
                   + _checked(name, _num("n"), "characters", "n", cap) + ", f)")
    for name in ("list_resize", "array_resize"):
        check = _checked(name, _num("n"), "elements", "n", cap)
        out.append(f"CREATE OR REPLACE TEMP MACRO {name}(l, n) AS system.main.{name}(l, {check}), "
                   f"(l, n, v) AS system.main.{name}(l, {check}, v)")
    out.append("CREATE OR REPLACE TEMP MACRO bitstring(s, n) AS system.main.bitstring(s, "
               + _checked("bitstring", _num("n"), "bits", "n", cap) + ")")
    grown = f"{_len('s')} / greatest({_len('f')}, 1) * greatest({_len('r')}, 1) + {_len('s')}"
    out.append("CREATE OR REPLACE TEMP MACRO replace(s, f, r) AS system.main.replace(s, f, "
               + _checked("replace", grown, "characters", "r", cap) + ")")
    grown = f"{_len('s')} * ({_len('r')} + 1) + {_len('s')}"
    check = _checked("regexp_replace", grown, "characters", "r", cap)
    out.append(f"CREATE OR REPLACE TEMP MACRO regexp_replace(s, p, r) AS system.main.regexp_replace(s, p, {check}), "
               f"(s, p, r, o) AS system.main.regexp_replace(s, p, {check}, o)")
    for name in ("printf", "format"):
        overloads = []
        for k in range(0, 9):
            args = [f"a{i}" for i in range(1, k + 1)]
            size = _widths("fmt", args) + "".join(f" + {_len(a)}" for a in args) + f" + {_len('fmt')}"
            call = ", ".join([_checked(name, size, "characters", "fmt", cap), *args])
            overloads.append(f"({', '.join(['fmt', *args])}) AS system.main.{name}({call})")
        out.append(f"CREATE OR REPLACE TEMP MACRO {name}" + ", ".join(overloads))
    return tuple(out)
