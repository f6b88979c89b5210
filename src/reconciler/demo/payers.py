"""Who pays, and whether their bank can take money back.

A QRIS refund goes back through the payer's issuing bank or wallet; some small rural
banks (BPR) take QRIS payments but offer no refund API, so the provider must refuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from random import Random

Method = Literal["QRIS", "VA", "EWALLET", "CARD"]

METHODS: tuple[Method, ...] = ("QRIS", "EWALLET", "VA", "CARD")
METHOD_WEIGHTS = (45, 25, 22, 8)

_QRIS_ISSUERS = ("BCA", "BRI", "MANDIRI", "BNI", "GOPAY", "OVO", "DANA", "SHOPEEPAY")
_WALLETS = ("GOPAY", "OVO", "DANA", "SHOPEEPAY", "LINKAJA")
_VA_BANKS = ("BCA", "BRI", "MANDIRI", "BNI", "PERMATA", "BSI")
_CARD_NETWORKS = ("VISA", "MASTERCARD", "JCB", "GPN")
_NO_REFUND_PREFIX = "QRIS:BPR-"


def payer_ref(method: Method, rng: Random, no_refund_rate: float) -> str:
    """A masked reference to the paying account, in the provider's notation."""
    digits = f"{rng.randrange(10_000):04d}"
    if method == "QRIS":
        if rng.random() < no_refund_rate:
            return f"{_NO_REFUND_PREFIX}{rng.randrange(1, 80):03d}:****{digits}"
        return f"QRIS:{rng.choice(_QRIS_ISSUERS)}:****{digits}"
    if method == "EWALLET":
        return f"EWALLET:{rng.choice(_WALLETS)}:08*****{digits}"
    if method == "VA":
        return f"VA:{rng.choice(_VA_BANKS)}:****{digits}"
    return f"CARD:{rng.choice(_CARD_NETWORKS)}:****{digits}"


def refundable(reference: str) -> bool:
    """Whether the provider can return money to this payer."""
    return not reference.startswith(_NO_REFUND_PREFIX)
