"""One wire format: the SDK's models and operations against the live server's OpenAPI document. A field renamed,
added as required, or an operation moved on either side fails here."""

from __future__ import annotations

from typing import Any

import pytest
from consentcam_sdk import AsyncClient
from consentcam_sdk.client import OPERATIONS
from consentcam_sdk.models import SCHEMAS, Input


@pytest.fixture
async def document(live: Any) -> dict[str, Any]:
    async with AsyncClient(live.url) as cc:
        return await cc.openapi()


def _component(document: dict[str, Any], name: str, model: type) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    mode = "Input" if issubclass(model, Input) else "Output"
    for candidate in (name, f"{name}-{mode}"):
        if candidate in schemas:
            return schemas[candidate]
    raise AssertionError(f"the server's OpenAPI document has no component {name} (for {model.__name__})")


def _fields(model: type) -> tuple[set[str], set[str]]:
    names = {f.alias or n for n, f in model.model_fields.items()}
    required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
    return names, required


@pytest.mark.parametrize("model", sorted(SCHEMAS, key=lambda m: m.__name__), ids=lambda m: m.__name__)
async def test_model_agrees_with_its_component(document: dict[str, Any], model: type) -> None:
    component = _component(document, SCHEMAS[model], model)
    names, required = _fields(model)
    assert names == set(component.get("properties", {})), f"{model.__name__} fields"
    assert required == set(component.get("required", [])), f"{model.__name__} required fields"


@pytest.mark.parametrize(("method", "path", "statuses"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
async def test_operation_exists_with_its_statuses(document: dict[str, Any], method: str, path: str,
                                                  statuses: tuple[int, ...]) -> None:
    operation = document["paths"].get(path, {}).get(method.lower())
    assert operation is not None, f"the server has no {method} {path}"
    assert {str(s) for s in statuses} <= set(operation["responses"]), operation["responses"].keys()


def test_every_component_the_sdk_mirrors_is_distinct() -> None:
    assert len(set(SCHEMAS.values())) == len(SCHEMAS)
