"""`GET /metrics` on the API: the finance figures for a viewer, valid for promtool."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from reconciler.projections import Projector, ReadModels
from reconciler.store import open_store
from tests.integration.test_api_actions import AS_VIEWER, RULES, seeded_log, serving

if TYPE_CHECKING:
    from pathlib import Path


def test_metrics_needs_a_token(tmp_path: Path) -> None:
    """Without a bearer token /metrics answers 401, like every other money figure."""
    for api in serving(seeded_log(tmp_path)):
        assert api.get("/metrics").status_code == 401


def test_metrics_serve_the_read_models_figures_in_valid_exposition(tmp_path: Path) -> None:
    """A viewer scrapes the projected money; promtool accepts the text as it is."""
    url = seeded_log(tmp_path)
    store = open_store(url)
    try:
        Projector(store, RULES).catch_up()
        at_risk = ReadModels(store).summary().totals.at_risk
    finally:
        store.close()
    for api in serving(url):
        response = api.get("/metrics", headers=AS_VIEWER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f'reconciler_money_rupiah{{state="at_risk"}} {float(at_risk)}' in response.text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: run scripts/ensure-test-tools.sh")
    checked = subprocess.run(  # noqa: S603 - a fixed tool on our own output
        [promtool, "check", "metrics"], input=response.content, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
