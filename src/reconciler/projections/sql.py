"""The read models' DDL, kept as material in the repository's `projections/` folder.

`projections/sqlite.sql` and `projections/postgresql.sql` create the tables and the one
view; finance reads them there, and this module runs them. A source checkout (and an
editable install) reads the folder itself; a wheel carries the two files inside the
package, under `reconciler/projections/sql/`. Statements are split on `;` after the
comment lines are dropped, so a `;` may appear in comments but not in the SQL.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

TABLES = (
    "rm_sources",
    "rm_orders",
    "rm_cases",
    "rm_money_hourly",
    "rm_outcomes",
    "rm_remedy_times",
    "rm_order_records",
)
"""Every table the files create; a rebuild drops them all."""

VIEWS = ("rm_open_cases",)
"""Every view the files create (dropped before the tables it reads)."""

_CHECKOUT = Path(__file__).resolve().parents[3] / "projections"


def ddl_statements(dialect: Dialect) -> list[str]:
    """The CREATE statements of one dialect's file, in order, without comments."""
    lines = [
        line for line in _read(f"{dialect}.sql").splitlines() if not line.lstrip().startswith("--")
    ]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def _read(name: str) -> str:
    in_checkout = _CHECKOUT / name
    if in_checkout.is_file():
        return in_checkout.read_text(encoding="utf-8")
    packaged = resources.files("reconciler.projections").joinpath("sql", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    msg = f"the read models' SQL {name} is neither in {_CHECKOUT} nor in the installed package"
    raise FileNotFoundError(msg)
