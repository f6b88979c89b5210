"""`python -m reconciler.api`: the API's command alone (`reconciler api` once wired)."""

from reconciler.api.cli import api_app

api_app(prog_name="reconciler api")
