"""The finance dashboard only asks for what exists: exported metrics, real tables and columns.

projections/grafana/finance.json is read as Grafana would. Every PromQL `expr` is cut
into tokens: names called like functions must be PromQL's, names in `by (...)` and
selectors' `{...}` must be labels of the metrics the expression reads (or the target's
`job`, `instance`), and every other name must be a sample the `FinanceCollector`
exports. Every raw SQL must read `$schema.` tables of projections/postgresql.sql, and
each word in it must be SQL, a table, an alias it declares, or a column of a table it
reads. (tests/integration/test_finance_metrics.py runs the SQL on PostgreSQL.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.projections.metrics import FAMILIES

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "projections" / "grafana" / "finance.json"
DDL = ROOT / "projections" / "postgresql.sql"

SAMPLES = {name: family for family in FAMILIES.values() for name in family.sample_names()}
TARGET_LABELS = {"job", "instance"}
PROMQL_FUNCTIONS = {"sum", "max", "min", "avg", "count", "increase", "rate", "time", "topk"}
PROMQL_GROUPING = {"by", "without", "on", "ignoring"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}
IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
PROMQL_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|=~|!~|!=|[A-Za-z_:][\w:]*|\S')
SQL_WORDS = {
    "select", "distinct", "on", "from", "where", "as", "and", "or", "not", "is", "null", "in",
    "cross", "join", "left", "lateral", "group", "by", "order", "asc", "desc", "limit", "sum",
    "count", "max", "min", "coalesce", "between", "case", "when", "then", "else", "end",
}  # fmt: skip
TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{schema\}\.(\w+) \((.*?)\n\);", re.DOTALL)
VIEW = re.compile(r"CREATE OR REPLACE VIEW \{schema\}\.(\w+) AS\s+SELECT(.*?)\nFROM", re.DOTALL)
SQL_TOKEN = re.compile(r"'(?:[^']|'')*'|\"\w+\"|\$__\w+|\$\w+\.\w+|\w+\.\w+|[A-Za-z_]\w*|\S")


def dashboard() -> dict[str, Any]:
    """The dashboard JSON as Grafana imports it."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows only group them)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def targets(language: str) -> list[tuple[str, str]]:
    """Each panel's title with the text of each of its PromQL (`expr`) or SQL (`rawSql`) targets."""
    key = "expr" if language == "promql" else "rawSql"
    return [
        (panel["title"], target[key])
        for panel in panels()
        for target in panel["targets"]
        if key in target
    ]


def postgres_columns() -> dict[str, set[str]]:
    """Every read-model table and view of postgresql.sql, with its column names."""
    text = DDL.read_text(encoding="utf-8")
    columns: dict[str, set[str]] = {}
    for table, body in TABLE.findall(text):
        lines = [line.strip() for line in body.strip().splitlines()]
        columns[table] = {line.split()[0] for line in lines if not line.startswith("PRIMARY")}
    for view, select_list in VIEW.findall(text):
        items = select_list.strip().split(",\n")
        columns[view] = {re.split(r"\bAS\s+|\.", item.strip())[-1].strip() for item in items}
    return columns


def promql_names(expr: str) -> tuple[set[str], set[str], set[str]]:
    """The metrics, labels and functions an expression names (strings and ranges skipped)."""
    parts = [part for part in PROMQL_TOKEN.findall(expr) if not part.startswith(("[", '"'))]
    names: dict[str, set[str]] = {"metric": set(), "label": set(), "function": set()}
    closing = ""  # "}" inside a selector's labels, ")" inside a `by (...)` list
    for index, part in enumerate(parts):
        following = parts[index + 1] if index + 1 < len(parts) else ""
        if part == closing:
            closing = ""
        elif part == "{" or (part == "(" and parts[index - 1] in PROMQL_GROUPING):
            closing = "}" if part == "{" else ")"
        elif not IDENTIFIER.fullmatch(part) or part in PROMQL_GROUPING | PROMQL_WORDS:
            continue
        elif closing:
            names["label"].add(part)
        elif following in {"(", *PROMQL_GROUPING}:
            names["function"].add(part)
        else:
            names["metric"].add(part)
    return names["metric"], names["label"], names["function"]


def test_the_dashboard_is_grafana_10_json_with_both_datasources_as_variables() -> None:
    """Schema 39, unique panel ids, and every panel on the Prometheus or PostgreSQL variable."""
    loaded = dashboard()
    assert loaded["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in loaded["templating"]["list"]}
    assert variables["prometheus"]["type"] == variables["postgres"]["type"] == "datasource"
    assert variables["postgres"]["query"] == "grafana-postgresql-datasource"
    assert "reconciler_finance_scrape_error" in variables["job"]["definition"]
    ids = [panel["id"] for panel in loaded["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        uids = {panel["datasource"]["uid"], *(t["datasource"]["uid"] for t in panel["targets"])}
        assert uids in ({"${prometheus}"}, {"${postgres}"}), panel["title"]
        assert panel["title"]
        assert panel["description"]


def test_every_promql_names_only_exported_metrics_and_their_labels() -> None:
    """Each expr reads exported samples, groups by their labels, and calls PromQL functions."""
    assert targets("promql")
    for title, expr in targets("promql"):
        metrics, labels, functions = promql_names(expr)
        assert metrics, title
        assert metrics <= set(SAMPLES), (title, metrics - set(SAMPLES))
        known = TARGET_LABELS.union(*(SAMPLES[metric].labels for metric in metrics))
        assert labels <= known, (title, labels - known)
        assert functions <= PROMQL_FUNCTIONS, (title, functions - PROMQL_FUNCTIONS)


def test_every_exported_family_is_on_the_dashboard() -> None:
    """No figure the collector exports is left off the dashboard."""
    shown = set().union(*(promql_names(expr)[0] for _, expr in targets("promql")))
    assert {SAMPLES[name].name for name in shown} == set(FAMILIES)


def test_the_promql_reader_finds_what_an_expression_names() -> None:
    """The tokeniser tells metrics, labels and functions apart, strings and ranges skipped."""
    expr = (
        'sum by (kind, outcome) (increase(reconciler_outcomes_total{job=~"$job", kind="a b"}[1h]))'
        " > 0 and on (kind) reconciler_orders"
    )
    assert promql_names(expr) == (
        {"reconciler_outcomes_total", "reconciler_orders"},
        {"kind", "outcome", "job"},
        {"sum", "increase"},
    )


@pytest.mark.parametrize("table", ["rm_open_cases", "rm_money_hourly", "rm_orders"])
def test_the_ddl_reader_finds_the_columns(table: str) -> None:
    """postgresql.sql is read into tables and columns, the view's computed ones included."""
    columns = postgres_columns()[table]
    assert "source" in columns
    assert {"age_seconds", "age_bucket", "clock"} <= columns or table != "rm_open_cases"
    assert "PRIMARY" not in columns


def test_every_sql_panel_reads_real_tables_and_columns() -> None:
    """Raw SQL names only $schema tables of postgresql.sql and columns they have."""
    columns = postgres_columns()
    assert targets("sql")
    for title, sql in targets("sql"):
        tokens = SQL_TOKEN.findall(sql)
        tables = {token.split(".", 1)[1] for token in tokens if token.startswith("$schema.")}
        assert tables, title
        assert tables <= set(columns), (title, tables - set(columns))
        readable = set().union(*(columns[table] for table in tables))
        aliases = {
            tokens[n + 1].strip('"') for n, token in enumerate(tokens[:-1]) if token.upper() == "AS"
        }
        for token in tokens:
            if token.startswith(("$", "'")) or not re.match(r'[A-Za-z_"]', token):
                continue
            if "." in token:
                alias, column = token.split(".", 1)
                assert alias in aliases, (title, token)
                assert column in readable | aliases, (title, token)
            else:
                name = token.strip('"')
                assert name.lower() in SQL_WORDS or name in readable | aliases, (title, token)
