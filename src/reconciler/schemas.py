"""The producers' contract: a JSON Schema per event type and version, from the models."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from reconciler.domain.events import FACT_MODELS

if TYPE_CHECKING:
    from pathlib import Path


def schema_documents() -> dict[str, str]:
    """File name to schema text, for every event type and version."""
    documents = {}
    for (kind, version), model in sorted(FACT_MODELS.items()):
        schema = model.model_json_schema(mode="validation")
        # Producers must name the type; the models default it only for code that builds facts.
        schema["required"] = ["type", *schema["required"]]
        schema["properties"]["type"].pop("default", None)
        # SPEC: unknown extra fields are kept, not rejected (the engine's models strip them).
        schema["additionalProperties"] = True
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{kind}.v{version}.schema.json"
        documents[f"{kind}.v{version}.schema.json"] = json.dumps(schema, indent=2) + "\n"
    return documents


def export_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
