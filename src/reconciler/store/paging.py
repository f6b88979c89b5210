# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""Streaming a table in position order by keyset pages.

Each page is fetched on a connection taken from the pool and returned before the
page is yielded, so a slow consumer holds no connection and no snapshot, and memory
stays at one page whatever the log's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

PAGE_SIZE = 2000


class _Positioned(Protocol):
    @property
    def position(self) -> int: ...


RowT = TypeVar("RowT", bound=_Positioned)


def keyset_pages(
    fetch_page: Callable[[int, int], Sequence[RowT]],
    after: int = 0,
    limit: int | None = None,
    page_size: int | None = None,
) -> Iterator[RowT]:
    """Yield rows with position > `after`, at most `limit`, via `fetch_page(after, size)`.

    `page_size` defaults to the module's `PAGE_SIZE`, read at call time.
    """
    page_size = PAGE_SIZE if page_size is None else page_size
    check_limit(limit)
    remaining = limit
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        page = fetch_page(after, size)
        yield from page
        if len(page) < size:
            return
        after = page[-1].position
        if remaining is not None:
            remaining -= len(page)


def check_limit(limit: int | None) -> None:
    """Refuse a negative `limit`; `None` means no limit."""
    if limit is not None and limit < 0:
        msg = f"limit must not be negative, got {limit}"
        raise ValueError(msg)
