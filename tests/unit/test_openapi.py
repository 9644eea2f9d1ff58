"""Every service's OpenAPI document: served at /openapi.json (OpenAPI 3.1, valid), read at
/docs and /redoc, with the bodies the handlers read themselves described by the repo's JSON
Schemas (or the Open Inference Protocol's), and what serve answers matching what it documents.

The apps are built in-process, without Kafka or MLflow; nothing is fetched (Swagger UI's
scripts come from a CDN, in the reader's browser)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest

from driftloop.errors import InvalidInput, NotFound, SchemaViolation
from driftloop.http import error_answer
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
ENVELOPE = ("schema_version", "event_id", "event_time")
JSON = "application/json"


def ingest_app() -> Any:
    from driftloop.services.ingest.http import create_app
    from driftloop.services.ingest.settings import IngestSettings

    return create_app(IngestSettings(), producer=SimpleNamespace())  # type: ignore[arg-type]


def monitor_app() -> Any:
    from driftloop.services.monitor.http import create_app

    async def manual(name: str | None, evidence: dict[str, Any]) -> str:
        return "t-1"

    return create_app(lambda: [], SimpleNamespace(), manual)  # type: ignore[arg-type]


def trainer_app() -> Any:
    from driftloop.services.trainer.http import create_app

    return create_app()


def serve_app() -> Any:
    from driftloop.services.serve.http import create_app
    from driftloop.services.serve.settings import ServeSettings

    plane = SimpleNamespace(name="m", ready=lambda: False, repository=SimpleNamespace(problem=""))
    return create_app(ServeSettings(), plane)  # type: ignore[arg-type]


APPS = {"ingest": ingest_app, "monitor": monitor_app, "trainer": trainer_app, "serve": serve_app}
_DOCUMENTS: dict[str, dict[str, Any]] = {}


async def get(app: Any, path: str) -> httpx.Response:
    """``app``'s answer to ``GET path``, in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def document(service: str) -> dict[str, Any]:
    """The service's document, as its app serves it (fetched once per service)."""
    if service not in _DOCUMENTS:
        answer = await get(APPS[service](), "/openapi.json")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == JSON
        _DOCUMENTS[service] = answer.json()
    return _DOCUMENTS[service]


def body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    body = doc["paths"][path]["post"]["requestBody"]
    return dict(body["content"][JSON]["schema"])


def component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(doc["components"]["schemas"][name])


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` whose references resolve in the document's components."""
    root = {**schema, "components": doc["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def repo_schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


@pytest.mark.parametrize("service", list(APPS))
async def test_every_service_serves_a_valid_openapi_3_1_document(service: str) -> None:
    doc = await document(service)
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] == f"driftloop {service}"
    assert {"/health/live", "/health/ready", "/metrics"} <= doc["paths"].keys()
    ready = doc["paths"]["/health/ready"]["get"]["responses"]["503"]
    assert ready["content"][JSON]["schema"] == {"$ref": "#/components/schemas/Error"}
    spec_validator = pytest.importorskip("openapi_spec_validator")
    spec_validator.validate(doc)


@pytest.mark.parametrize("service", list(APPS))
async def test_every_service_serves_its_docs_pages(service: str) -> None:
    app = APPS[service]()
    for path, marker in (("/docs", "swagger-ui"), ("/redoc", "redoc")):
        answer = await get(app, path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
        assert marker in answer.text and "/openapi.json" in answer.text
    assert (await get(app, "/no/such/page")).status_code == 404
    # The pages are tried after the service's own routes, which never pay for them.
    fastapi_app = getattr(app, "app", app)  # serve's inference front hands the rest to its app
    assert not {"/docs", "/openapi.json"} & {getattr(r, "path", "") for r in fastapi_app.routes}


@pytest.mark.parametrize("service", list(APPS))
async def test_every_state_changing_operation_documents_its_body_and_errors(service: str) -> None:
    doc = await document(service)
    changing = [
        (path, method, operation)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch", "delete")
    ]
    for path, method, operation in changing:
        if path != "/v2/repository/models/{name}/load":  # admin: takes no body
            assert operation["requestBody"]["content"][JSON]["schema"], (path, method)
        errors = {status for status in operation["responses"] if status.startswith("4")}
        assert errors, (path, method)
        for status in errors:
            schema = operation["responses"][status]["content"][JSON]["schema"]
            if schema != {"$ref": "#/components/schemas/Error"}:  # FastAPI's, for a path param
                assert (path, status) == ("/v2/repository/models/{name}/load", "422")
    assert service == "trainer" or changing  # the trainer takes its work from Kafka only


async def test_the_error_schema_is_what_every_error_answer_is() -> None:
    check = validator(await document("ingest"), {"$ref": "#/components/schemas/Error"})
    for error, index in [
        (SchemaViolation("label", "type", "label is not a number"), 3),
        (InvalidInput("inputs.age", "inputs.age is FP32: got a string"), None),
        (NotFound("no report named w.html"), None),
    ]:
        check.validate(json.loads(error_answer(error, index)[1]))
    assert not check.is_valid({"detail": "a FastAPI error"})


@pytest.mark.parametrize(
    ("path", "name", "plural"),
    [("/v1/labels", "label", "labels"), ("/v1/predictions", "prediction", "predictions")],
)
async def test_ingest_bodies_are_the_events_schemas_with_the_envelope_filled_in(
    path: str, name: str, plural: str
) -> None:
    doc = await document("ingest")
    title = name.capitalize()
    ref = {"$ref": f"#/components/schemas/{title}"}
    assert body_schema(doc, path) == {
        "oneOf": [
            ref,
            {"type": "array", "minItems": 1, "items": ref},
            {
                "type": "object",
                "required": [plural],
                "properties": {plural: {"type": "array", "minItems": 1, "items": ref}},
            },
        ]
    }
    # The repo's schema, read now: only the envelope (filled in when absent) is not required.
    expected = repo_schema(name)
    del expected["$id"]
    expected["required"] = [field for field in expected["required"] if field not in ENVELOPE]
    assert component(doc, title) == expected
    assert doc["paths"][path]["post"]["requestBody"]["required"] is True
    assert {"202", "400", "413", "422", "503"} <= doc["paths"][path]["post"]["responses"].keys()

    check = validator(doc, body_schema(doc, path))
    valid = json.loads((EXAMPLES / f"{name}.valid.json").read_text())
    bare = [{k: v for k, v in event.items() if k not in ENVELOPE} for event in valid]
    for body in (valid[0], valid, {plural: valid}, bare[0], bare):
        check.validate(body)
    for body in ([], {plural: []}, 1, {plural: valid[0]}):
        assert not check.is_valid(body), body
    for case in json.loads((EXAMPLES / f"{name}.invalid.json").read_text()):
        fills = case["expect"]["rule"] == "required" and case["expect"]["field"] in ENVELOPE
        assert check.is_valid(case["event"]) is fills, case["why"]


async def test_the_manual_trigger_body_is_the_trigger_events_model_name_and_evidence() -> None:
    doc = await document("monitor")
    body = doc["paths"]["/v1/triggers"]["post"]["requestBody"]
    assert body["required"] is False  # an empty body triggers the configured model
    assert body_schema(doc, "/v1/triggers") == {"$ref": "#/components/schemas/ManualTrigger"}
    trigger = repo_schema("trigger")["properties"]
    schema = component(doc, "ManualTrigger")
    assert schema["properties"] == {name: trigger[name] for name in ("model_name", "evidence")}
    check = validator(doc, schema)
    check.validate({})
    check.validate({"model_name": "loans", "evidence": {"why": "a person looked"}})
    for body in ({"model_name": ""}, {"evidence": 1}, []):
        assert not check.is_valid(body), body
    assert {"202", "400", "422", "503"} <= doc["paths"]["/v1/triggers"]["post"]["responses"].keys()


CARD = ModelCard(
    task="classification",
    classes=[0, 1],
    features=[
        FeatureSpec(name="age", type="int"),
        FeatureSpec(name="region", kind="categorical"),
        FeatureSpec(name="verified", kind="boolean", nullable=True),
    ],
)
OIP_REQUEST = {
    "id": "r-1",
    "inputs": [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [31, 40]},
        {"name": "region", "shape": [2, 1], "datatype": "BYTES", "data": [["north"], ["south"]]},
        {"name": "verified", "shape": [2], "datatype": "BOOL", "data": [True, None]},
    ],
    "outputs": [{"name": "scores"}],
}


@pytest.mark.parametrize(
    "path", ["/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
)
async def test_serve_documents_the_oip_inference_paths_it_routes_outside_fastapi(path: str) -> None:
    from driftloop.services.serve.protocol import DATATYPES, decode_infer

    doc = await document("serve")
    operation = doc["paths"][path]["post"]
    assert body_schema(doc, path) == {"$ref": "#/components/schemas/InferenceRequest"}
    assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == {
        part[1:-1] for part in path.split("/") if part.startswith("{")
    }
    answer = operation["responses"]["200"]["content"][JSON]["schema"]
    assert answer == {"$ref": "#/components/schemas/InferenceResponse"}
    assert {"400", "404", "413", "422", "500", "503"} <= operation["responses"].keys()
    # The OIP v2 request: inputs[] of name, shape, datatype, data; outputs; parameters.
    request = component(doc, "InferenceRequest")
    assert request["required"] == ["inputs"]
    assert {"id", "parameters", "inputs", "outputs"} == request["properties"].keys()
    tensor = component(doc, "RequestInput")
    assert set(tensor["required"]) == {"name", "shape", "datatype", "data"}
    assert set(tensor["properties"]["datatype"]["enum"]) == DATATYPES

    check = validator(doc, body_schema(doc, path))
    decode_infer(OIP_REQUEST, CARD)  # what serve takes, the document takes
    check.validate(OIP_REQUEST)
    first = OIP_REQUEST["inputs"][0]  # type: ignore[index]
    for bad in [
        {"inputs": []},
        {"inputs": [{**first, "datatype": "FP128"}]},
        {"inputs": [{**first, "shape": [2, 1, 1]}]},
        {"inputs": [{k: v for k, v in first.items() if k != "data"}]},
        {**OIP_REQUEST, "outputs": [{"name": "logits"}]},
    ]:
        assert not check.is_valid(bad), bad


async def test_serve_documents_the_records_endpoint() -> None:
    from driftloop.services.serve.protocol import decode_records

    doc = await document("serve")
    assert body_schema(doc, "/v1/predict") == {"$ref": "#/components/schemas/RecordsRequest"}
    answer = doc["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"][JSON]
    assert answer["schema"] == {"$ref": "#/components/schemas/RecordsResponse"}
    check = validator(doc, body_schema(doc, "/v1/predict"))
    record = {"age": 31, "region": "north", "verified": True}
    for body in (record, [record, record], {"records": [record], "request_id": "r-1"}):
        decode_records(body, CARD)  # what serve takes, the document takes
        check.validate(body)
    for body in ([], {"records": []}, "age=31", {"age": [31]}):
        assert not check.is_valid(body), body


async def test_what_serve_answers_is_what_its_document_says() -> None:
    from driftloop.services.serve.protocol import (
        Predictions,
        infer_response,
        model_metadata,
        records_response,
    )

    doc = await document("serve")
    predictions = Predictions.decode(CARD, np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32))
    ids = ["r-1-0", "r-1-1"]
    answers = {
        "InferenceResponse": infer_response("m", "3", "r-1", ids, predictions),
        "RecordsResponse": records_response("m", "3", "r-1", ids, predictions),
        "ModelMetadata": model_metadata("m", "3", CARD),
    }
    for name, answer in answers.items():
        validator(doc, {"$ref": f"#/components/schemas/{name}"}).validate(
            json.loads(json.dumps(answer))  # as it goes on the wire: class keys are strings
        )
    metadata = doc["paths"]["/v2/models/{name}"]["get"]["responses"]["200"]
    assert metadata["content"][JSON]["schema"] == {"$ref": "#/components/schemas/ModelMetadata"}
    assert not validator(doc, {"$ref": "#/components/schemas/InferenceResponse"}).is_valid(
        {"outputs": []}
    )
