"""Progress for long work, shown on a terminal only, so pipes and tests stay clean."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import Console


@contextmanager
def counting_progress(console: Console, description: str) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the count done so far; draws only on a terminal."""
    if not console.is_terminal:
        yield lambda _done: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done: progress.update(task, completed=done)


@contextmanager
def bounded_progress(
    console: Console, description: str, total: int, unit: str = "records"
) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the count done so far out of `total`; a bar on a terminal only."""
    if not console.is_terminal:
        yield lambda _done: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=done)
