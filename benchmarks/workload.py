"""A synthetic registration-peak fact stream for benchmarks.

Mostly healthy orders, with the failures the engine exists for mixed in.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from reconciler.domain.events import (
    ClockTicked,
    OrderPlaced,
    PaymentDebited,
    StampIssued,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from reconciler.domain.events import Fact

WIB = timezone(timedelta(hours=7))
START = datetime(2024, 9, 4, 8, 0, tzinfo=WIB)


def one_stamp_order(order_id: str, now: datetime) -> dict[str, Any]:
    """The fields of an order for one stamp (Rp 10,000 + Rp 2,500), placed at `now`."""
    return {
        "event_id": f"o-{order_id}",
        "version": 1,
        "occurred_at": now,
        "order_id": order_id,
        "customer_ref": "c",
        "quantity": 1,
        "unit_price": 10_000,
        "unit_fee": 2_500,
        "total": 12_500,
        "expires_at": now + timedelta(minutes=30),
        "channel": "web",
    }


def peak_stream(count: int, seed: int = 7) -> Iterator[Fact]:
    """About `count` facts, one at a time: a tick per second, ~4 facts an order.

    3% of orders are never issued. One at a time because 10M facts do not fit a list.
    """
    rng = random.Random(seed)
    made = serial = order_number = 0
    now = START
    while made < count:
        now += timedelta(seconds=1)
        second: list[Fact] = [
            ClockTicked.model_construct(
                event_id=f"tick-{now.isoformat()}", version=1, occurred_at=now, at=now
            )
        ]
        for _ in range(rng.randint(5, 15)):
            order_number += 1
            order_id = f"ORD-{order_number:08d}"
            payment_id = f"PAY-{order_number:08d}"
            second.append(OrderPlaced.model_construct(**one_stamp_order(order_id, now)))
            second.extend(
                PaymentDebited.model_construct(
                    event_id=f"p-{payment_id}-{source}",
                    version=1,
                    occurred_at=now,
                    payment_id=payment_id,
                    order_id=order_id,
                    amount=12_500,
                    method="QRIS",
                    payer_ref="p",
                    source=source,
                )
                for source in ("callback", "settlement")
            )
            if rng.random() < 0.97:  # the healthy share of orders
                serial += 1
                second.append(
                    StampIssued.model_construct(
                        event_id=f"s-{order_id}",
                        version=1,
                        occurred_at=now,
                        order_id=order_id,
                        serial_numbers=(f"SN{serial:010d}",),
                        command_id=None,
                    )
                )
        yield from second[: count - made]
        made += len(second)


def peak_facts(count: int, seed: int = 7) -> list[Fact]:
    """The facts of `peak_stream(count, seed)`, as a list."""
    return list(peak_stream(count, seed))
