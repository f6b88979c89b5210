"""SQL is built with parameters only: no value is ever formatted into a statement.

Every f-string, `%` or `.format` in src/ whose text reads as SQL is found by walking the
syntax trees, and each expression composed into one must be in `REVIEWED`: names the
code itself owns (its tables, columns, conflict clauses, fixed WHERE fragments holding
`?` placeholders, the driver's placeholder). The PostgreSQL schema, the one name that
comes from settings, is never composed this way: statements carry a `{schema}`
placeholder that `psycopg.sql.Identifier` fills (quoted), or SQLite drops. A new
composed expression fails here until it has been reviewed and added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER|TRUNCATE|COPY|WHERE|FROM"
    r"|VALUES|ON CONFLICT|ORDER BY|LIMIT|SET)\b"
)
# module -> the expressions composed into its SQL, each one checked by hand to hold only
# text the code itself owns.
REVIEWED = {
    # archive tables and key columns: fixed names picked from a literal dict.
    "reconciler/domain/archive.py": {"table", "_KEY[table]"},
    # read-model tables, columns and conflict clauses: module constants (`Upsert`s);
    # `stage` is `pg_temp.rm_stage_` + such a table; `values` is placeholders (`?`);
    # `insert` and `select` are built from those alone.
    "reconciler/projections/database.py": {
        "self.table",
        "', '.join(self.columns)",
        "values",
        "self.insert",
        "self.on_conflict",
        "stage",
        "columns",
        "upsert.table",
        "upsert.on_conflict",
        "upsert.insert",
        "select",
        "view",
        "table",
    },
    # column lists and WHERE fragments: constants, or lists of fixed `x = ?` conditions.
    "reconciler/projections/queries.py": {
        "_MONEY",
        "_ORDER_COLUMNS",
        "_PERCENTILES_SQL",
        "_where(where)",
        "' AND '.join(conditions)",
        "columns",
        "table",
    },
    "reconciler/projections/writer.py": {"_ORDER_UPDATES", "_MONEY_UPDATES"},
    # the log's table (`{schema}.records` or `records`) and the driver's `%s` or `?`.
    "reconciler/store/common.py": {"table", "where", "placeholder"},
}


def composed(tree: ast.AST, source: str) -> list[tuple[int, str]]:
    """(line, expression) for each expression composed into text that reads as SQL."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        text, parts = "", list[ast.expr]()
        if isinstance(node, ast.JoinedStr):
            text = "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
            parts = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            text, parts = node.left.value, [node.right]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
        ):
            text = node.func.value.value
            parts = [*node.args, *(keyword.value for keyword in node.keywords)]
        if parts and SQL_WORDS.search(text):
            line = getattr(node, "lineno", 0)
            found.extend((line, ast.get_source_segment(source, p) or "?") for p in parts)
    return found


def all_composed() -> dict[str, list[tuple[int, str]]]:
    """Per module under src/, the expressions composed into its SQL text."""
    result: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        found = composed(ast.parse(source), source)
        if found:
            result[path.relative_to(SRC).as_posix()] = found
    return result


def test_only_reviewed_names_are_composed_into_sql() -> None:
    """No f-string, `%` or `.format` puts an unreviewed expression into SQL text."""
    unreviewed = [
        f"{module}:{line}: {expression}"
        for module, found in all_composed().items()
        for line, expression in found
        if expression not in REVIEWED.get(module, set())
    ]
    assert unreviewed == []


def test_the_scan_finds_a_value_formatted_into_sql() -> None:
    """The scan flags each way of formatting a value into a statement."""
    source = (
        'f"SELECT * FROM t WHERE id = {order_id}"\n'
        '"DELETE FROM t WHERE id = %s" % order_id\n'
        '"UPDATE t SET a = {}".format(value)\n'
        'f"not sql {value}"\n'
    )
    found = composed(ast.parse(source), source)
    assert found == [(1, "order_id"), (2, "order_id"), (3, "value")]


def test_the_reviewed_list_has_nothing_stale() -> None:
    """Every reviewed expression is still composed somewhere: the list stays exact."""
    seen = {module: {e for _, e in found} for module, found in all_composed().items()}
    stale = {m: names - seen.get(m, set()) for m, names in REVIEWED.items()}
    assert {m: names for m, names in stale.items() if names} == {}
