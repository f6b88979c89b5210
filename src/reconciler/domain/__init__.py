"""The pure core: event models, state, the decider and its rules. No I/O here."""
