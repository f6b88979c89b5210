"""Event-sourced reconciliation of e-meterai payments, issuance and refunds."""

__version__ = "0.1.0"
