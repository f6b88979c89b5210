"""kafka-python, imported in one place with its import-time warning silenced.

kafka-python 3.0.12 loads its protocol schemas with `importlib.resources.read_text`,
which Python 3.11 and 3.12 deprecate (3.13 withdrew the deprecation). The warning is
about kafka-python's own code, says nothing about ours, and would fail any test run
with warnings as errors, so it is ignored here, for this import only. Import kafka
names from this module (or import this module first) to get that treatment.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
    )
    from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code
    from kafka.structs import OffsetAndMetadata, TopicPartition

__all__ = [
    "ConsumerRebalanceListener",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaError",
    "KafkaProducer",
    "OffsetAndMetadata",
    "TopicAlreadyExistsError",
    "TopicPartition",
    "for_code",
]
