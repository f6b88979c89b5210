"""The producers' contract in events/ stays what the models say."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.domain.events import FACT_MODELS
from reconciler.schemas import export_schemas, schema_documents

EVENTS_DIR = Path(__file__).parents[2] / "events"


def test_committed_schemas_match_the_models() -> None:
    """Every schema in events/ equals the export from the models: no drift either way."""
    expected = schema_documents()
    committed = {path.name: path.read_text(encoding="utf-8") for path in EVENTS_DIR.glob("*.json")}
    assert committed == expected, "run `make schemas` and commit events/"


def test_one_schema_per_type_and_version(tmp_path: Path) -> None:
    """The export writes one file per event type and version, each naming its type."""
    written = export_schemas(tmp_path)
    assert len(written) == len(FACT_MODELS)
    for path in written:
        schema = json.loads(path.read_text(encoding="utf-8"))
        kind = path.name.split(".")[0]
        assert schema["properties"]["type"]["const"] == kind
        assert "event_id" in schema["required"]
