"""A fast, early refusal of the values ad-hoc SQL most often blows up: lists and strings that one number sizes.

`SELECT range(0, 20000000)`, `repeat('x', 500000000)` or `list_resize([1], 300000000)` make DuckDB build
one value whole, outside its memory limit, and nothing interrupts it until it returns (a review measured
`range(0, 20000000)` at 36.8 s and 2.4 GB). The process's memory cap (tasktrail/memory_cap.py,
--max-memory) is what bounds every such value; this module only refuses these few builders before they
start, in milliseconds, with an error that says which call, how big and why.

Each SQL reader shadows them with TEMP macros of the same names (temp objects are found before the
built-ins) that work out the size from the arguments and call the built-in (`system.main.<name>`) only when
it fits: the answer's byte cap (--sql-max-bytes) in characters, or a sixteenth of it in list elements. No
answer could carry such a string, and a list costs DuckDB far more than its JSON. Table functions
(`FROM range(...)`) are not affected: they stream rows. query/sql_guard.py refuses a qualified call
(`system.main.repeat(...)`) that would bypass these. What the macros change for ordinary calls, besides
the bound: a number given as text (`range('5')`) and named arguments are no longer accepted, and a volatile
argument (random()) is evaluated once for the size and once for the value.
"""
from __future__ import annotations

from functools import lru_cache

# A list element's cost counted against the answer's byte cap: DuckDB builds and converts long lists
# slowly (a 20M-element range() took 25 s and 2.2 GB before any answer), so lists get a sixteenth of it.
ELEMENT_BYTES = 16

# Builders this module bounds; sql_guard refuses them called with a schema or catalog.
BOUNDED = ("range", "generate_series", "repeat", "list_resize", "array_resize")


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
    for name in ("list_resize", "array_resize"):
        check = _checked(name, _num("n"), "elements", "n", cap)
        out.append(f"CREATE OR REPLACE TEMP MACRO {name}(l, n) AS system.main.{name}(l, {check}), "
                   f"(l, n, v) AS system.main.{name}(l, {check}, v)")
    return tuple(out)
