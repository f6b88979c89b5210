"""Who pays: the method, and the paying account as the payment provider masks it.

Whether the payer's bank can take a refund is the payment provider's to say (the PSP
simulator refuses some payments REFUND_NOT_SUPPORTED), not the payer's reference.
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


def payer_ref(method: Method, rng: Random) -> str:
    """A masked reference to the paying account, in the provider's notation."""
    digits = f"{rng.randrange(10_000):04d}"
    if method == "QRIS":
        return f"QRIS:{rng.choice(_QRIS_ISSUERS)}:****{digits}"
    if method == "EWALLET":
        return f"EWALLET:{rng.choice(_WALLETS)}:08*****{digits}"
    if method == "VA":
        return f"VA:{rng.choice(_VA_BANKS)}:****{digits}"
    return f"CARD:{rng.choice(_CARD_NETWORKS)}:****{digits}"
