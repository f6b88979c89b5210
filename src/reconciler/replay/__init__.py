"""The auditors' side: re-derive the log's decisions from its facts, as of any moment."""
