"""The outside world's facts, delivered as a flaky network and careless producers deliver.

Waves of facts go out at their times, each wave shuffled (facts of one order can arrive
out of their order), some facts are sent again a few waves later, and a wave whose
sending failed (the broker was unreachable) is sent again whole: at-least-once delivery
with duplicates and reordering, which the engine must absorb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafka.errors import KafkaError

from reconciler.kafka_io import producer_config
from reconciler.kafka_io._kafka import KafkaProducer

if TYPE_CHECKING:
    import random
    import threading
    from collections.abc import Sequence

    from tests.remediation_support import Outside

SEND_TIMEOUT_S = 20.0
RESEND_PAUSE_S = 0.5


@dataclass
class Delivery:
    """What the feed did: facts sent, sent again, and delivered out of order."""

    sent: int = 0
    duplicates: int = 0
    resent_waves: int = 0
    out_of_order: int = 0
    done: bool = False


def _inversions(original: Sequence[Outside], shuffled: Sequence[Outside]) -> int:
    """Pairs of facts with one key whose order the shuffle swapped."""
    rank = {id(fact): index for index, fact in enumerate(original)}
    count = 0
    for later, fact in enumerate(shuffled):
        count += sum(
            1
            for earlier in shuffled[:later]
            if earlier.key is not None
            and earlier.key == fact.key
            and rank[id(earlier)] > rank[id(fact)]
        )
    return count


class ChaoticFeed:
    """Sends a day's outside facts to a topic with duplicates and reordering."""

    def __init__(  # noqa: PLR0913 - where, what, and how badly
        self,
        bootstrap: str,
        topic: str,
        facts: Sequence[Outside],
        rng: random.Random,
        *,
        wave_s: float = 1.0,
        duplicate_rate: float = 0.05,
    ) -> None:
        """Ready to feed `facts` (in arrival order) to `topic`."""
        self._bootstrap = bootstrap
        self._topic = topic
        self._facts = list(facts)
        self._rng = rng
        self._wave_s = wave_s
        self._duplicate_rate = duplicate_rate
        self.delivery = Delivery()

    def run(self, stop: threading.Event) -> None:
        """Feed every fact at its time, then every pending duplicate; stop early if told."""
        producer = KafkaProducer(**producer_config(self._bootstrap))
        again: dict[int, list[Outside]] = {}  # wave number -> facts to send again then
        try:
            started = time.monotonic()
            pending = self._facts
            wave_number = 0
            while (pending or again) and not stop.is_set():
                horizon = time.monotonic() - started + self._wave_s
                wave = [fact for fact in pending if fact.offset_s < horizon]
                pending = pending[len(wave) :]
                shuffled = self._rng.sample(wave, len(wave))
                self.delivery.out_of_order += _inversions(wave, shuffled)
                repeats = again.pop(wave_number, [])
                if not pending and again:  # the facts are out: send every duplicate left
                    repeats += [fact for later in again.values() for fact in later]
                    again.clear()
                for fact in shuffled:
                    if self._rng.random() < self._duplicate_rate:
                        again.setdefault(wave_number + self._rng.randint(1, 5), []).append(fact)
                self._send(producer, [*shuffled, *repeats], stop)
                self.delivery.sent += len(shuffled)
                self.delivery.duplicates += len(repeats)
                wave_number += 1
                if pending:
                    # Pacing the feed: the next wave is due then.
                    time.sleep(max(0.0, started + pending[0].offset_s - time.monotonic()))
                else:
                    time.sleep(self._wave_s)
            self.delivery.done = not pending and not again
        finally:
            producer.close(timeout=5)

    def _send(
        self, producer: KafkaProducer, wave: Sequence[Outside], stop: threading.Event
    ) -> None:
        """Send the wave; if any send fails, send the whole wave again (duplicates)."""
        while not stop.is_set():
            futures = [producer.send(self._topic, key=f.key, value=f.value) for f in wave]
            try:
                producer.flush(timeout=SEND_TIMEOUT_S)
                for future in futures:
                    future.get(timeout=SEND_TIMEOUT_S)
            except KafkaError:
                self.delivery.resent_waves += 1
                time.sleep(RESEND_PAUSE_S)
                continue
            return
