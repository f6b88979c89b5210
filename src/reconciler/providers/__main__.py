"""`python -m reconciler.providers`, the same as `reconciler simulate`."""

from reconciler.providers.cli import simulate_app

simulate_app(prog_name="reconciler simulate")
