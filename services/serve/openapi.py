"""serve's OpenAPI document: the Open Inference Protocol v2 REST paths and the records endpoint.

The inference POSTs are routed by :class:`~driftloop.services.serve.http.InferenceFront` on
bare ASGI, ahead of the app: FastAPI never sees them, so they are described here and added to
the document FastAPI generates for the rest (:class:`driftloop.openapi.ApiDocument`), with the
protocol's schemas for what the metadata and health routes answer. The schemas follow the OIP
v2 REST specification (KServe's "V2 inference protocol") as serve speaks it
(:mod:`driftloop.services.serve.protocol`): one tensor per feature, shaped ``[rows]`` or
``[rows, 1]``; outputs ``predict`` and ``scores``. What a feature's values must be is the
model's contract, which the model's metadata carries (``parameters.contract``): no static
document can say it.

Example:
    >>> from fastapi import FastAPI
    >>> from driftloop.openapi import ApiDocument
    >>> app = FastAPI()
    >>> describe(ApiDocument(app))
    >>> infer = app.openapi()["paths"]["/v2/models/{name}/infer"]["post"]
    >>> infer["requestBody"]["content"]["application/json"]["schema"]
    {'$ref': '#/components/schemas/InferenceRequest'}

References:
    Open Inference Protocol, REST:
    https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
"""

from __future__ import annotations

from typing import Any

from driftloop.openapi import SCALAR, ApiDocument, error_responses, json_answer, json_body, ref
from driftloop.services.serve.protocol import DATATYPES, OUTPUTS

Schema = dict[str, Any]

PARAMETERS: Schema = {
    "type": "object",
    "description": "Parameters of the request, a tensor or the answer (free-form).",
}
REQUEST_ID: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "The request's id: its predictions are logged under it (one row) or under "
    "`<id>-<i>` (a batch); a later label refers to it. A new one when left out.",
}
TENSOR_DATA: Schema = {
    "type": "array",
    "description": "The tensor's values, flat or nested row-major.",
    "items": {"anyOf": [SCALAR, {"type": "array", "items": SCALAR}]},
}

SCHEMAS: dict[str, Schema] = {
    "InferenceRequest": {
        "title": "Inference request",
        "description": "OIP v2 `$inference_request`: one named tensor per feature of the model.",
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": REQUEST_ID,
            "parameters": PARAMETERS,
            "inputs": {"type": "array", "minItems": 1, "items": ref("RequestInput")},
            "outputs": {
                "type": "array",
                "description": "The outputs to answer with; all when left out.",
                "items": ref("RequestOutput"),
            },
        },
    },
    "RequestInput": {
        "title": "Request input",
        "description": "OIP v2 `$request_input`: one feature's values, a row each.",
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "description": "The feature's name."},
            "shape": {
                "type": "array",
                "description": "`[rows]` or `[rows, 1]`: one feature per tensor.",
                "minItems": 1,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": 0},
            },
            "datatype": {
                "enum": sorted(DATATYPES),
                "description": "A number's (FP*, INT*, UINT*) for a numeric feature, BOOL for "
                "a boolean one, BYTES for a categorical one.",
            },
            "parameters": PARAMETERS,
            "data": TENSOR_DATA,
        },
    },
    "RequestOutput": {
        "title": "Request output",
        "description": "OIP v2 `$request_output`: an output to answer with.",
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"enum": list(OUTPUTS)}, "parameters": PARAMETERS},
    },
    "InferenceResponse": {
        "title": "Inference response",
        "description": "OIP v2 `$inference_response`: `predict` (the class or value per row) "
        "and, for a classifier, `scores` (`[rows, classes]` probabilities; the classes in its "
        "parameters).",
        "type": "object",
        "required": ["model_name", "id", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string", "description": "The version that answered."},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {
                    "request_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Each row's request id, as its prediction is logged.",
                    }
                },
            },
            "outputs": {"type": "array", "items": ref("ResponseOutput")},
        },
    },
    "ResponseOutput": {
        "title": "Response output",
        "description": "OIP v2 `$response_output`.",
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"enum": list(OUTPUTS)},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": sorted(DATATYPES)},
            "parameters": {
                "type": "object",
                "properties": {"classes": {"type": "array", "items": SCALAR}},
            },
            "data": {"type": "array", "items": SCALAR},
        },
    },
    "Record": {
        "title": "Record",
        "description": "One row: the features' values keyed by feature name, and optionally "
        "`request_id` (or `id`) when no feature has that name.",
        "type": "object",
        "minProperties": 1,
        "additionalProperties": SCALAR,
    },
    "RecordsRequest": {
        "title": "Records request",
        "description": 'One record, a list of them, or `{"records": [...], "request_id": ...}`.',
        "oneOf": [
            ref("Record"),
            {"type": "array", "minItems": 1, "items": ref("Record")},
            {
                "type": "object",
                "required": ["records"],
                "properties": {
                    "records": {"type": "array", "minItems": 1, "items": ref("Record")},
                    "request_id": REQUEST_ID,
                    "id": REQUEST_ID,
                },
            },
        ],
    },
    "RecordsResponse": {
        "title": "Records response",
        "description": "One prediction per record, in order.",
        "type": "object",
        "required": ["model_name", "model_version", "request_id", "predictions"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string", "description": "The version that answered."},
            "request_id": {"type": "string"},
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["request_id", "prediction"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "prediction": SCALAR,
                        "scores": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "Class probabilities, by class (classifiers).",
                        },
                    },
                },
            },
        },
    },
    "ServerMetadata": {
        "title": "Server metadata",
        "description": "OIP v2 `$metadata_server_response`.",
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelMetadata": {
        "title": "Model metadata",
        "description": "OIP v2 `$metadata_model_response`; its parameters carry the contract "
        "requests are checked against.",
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": ref("TensorMetadata")},
            "outputs": {"type": "array", "items": ref("TensorMetadata")},
            "parameters": {
                "type": "object",
                "properties": {
                    "task": {"enum": ["classification", "regression"]},
                    "classes": {"type": "array", "items": SCALAR},
                    "target": {"type": "string"},
                    "contract": {"type": "object"},
                },
            },
        },
    },
    "TensorMetadata": {
        "title": "Tensor metadata",
        "description": "OIP v2 `$metadata_tensor`; -1 is a dimension of any size.",
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"enum": sorted(DATATYPES)},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Live": {
        "title": "Live",
        "type": "object",
        "required": ["live"],
        "properties": {"live": {"type": "boolean"}},
    },
    "Ready": {
        "title": "Ready",
        "type": "object",
        "required": ["ready"],
        "properties": {
            "ready": {"type": "boolean"},
            "error": {"type": "string", "description": "Why not, when not."},
        },
    },
    "ModelReady": {
        "title": "Model ready",
        "type": "object",
        "required": ["name", "ready"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "ready": {"type": "boolean"},
        },
    },
}

NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
CALLER_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "The request's id, when the body gives none.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
NOT_FOUND = {404: "No such model (or version) is served here."}
NOT_READY = {503: "No model is loaded yet."}
INFERENCE_ERRORS = error_responses(
    {
        400: "The body is not JSON, or not the shape the endpoint takes.",
        413: "The body is over `SERVE_MAX_BODY_BYTES`.",
        422: "The input does not fit the model's contract: `field` names where "
        "(`inputs.age`, `records[3].region`), `rule` why.",
        500: "The model failed.",
        **NOT_READY,
    }
)
# Inference takes POST; any other method on these paths is answered 405 (not an operation).
METHODS_NOTE = " Any other method than POST is answered 405."


def _infer(summary: str, operation_id: str, parameters: list[Any]) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["inference"],
            "summary": summary,
            "description": "OIP v2 inference: checks the body against the served model's "
            "contract, answers with its predictions, and logs one prediction event per row."
            + METHODS_NOTE,
            "operationId": operation_id,
            "parameters": [*parameters, CALLER_ID],
            **json_body(ref("InferenceRequest")),
            "responses": {
                "200": json_answer(ref("InferenceResponse"), "The model's outputs."),
                **INFERENCE_ERRORS,
                **error_responses(NOT_FOUND),
            },
        }
    }


def _answers(schema: str, description: str, errors: dict[int, str]) -> dict[str, Any]:
    return {
        "get": {
            "responses": {
                "200": json_answer(ref(schema), description),
                **error_responses(errors),
            }
        }
    }


PATHS: dict[str, dict[str, Any]] = {
    "/v2/models/{name}/infer": _infer("Infer", "infer", [NAME]),
    "/v2/models/{name}/versions/{version}/infer": _infer(
        "Infer with a version", "infer_version", [NAME, VERSION]
    ),
    "/v1/predict": {
        "post": {
            "tags": ["inference"],
            "summary": "Predict records",
            "description": "Plain records, keyed by feature name: checked against the served "
            "model's contract, answered with one prediction per record, each logged as a "
            "prediction event." + METHODS_NOTE,
            "operationId": "predict_records",
            "parameters": [CALLER_ID],
            **json_body(ref("RecordsRequest")),
            "responses": {
                "200": json_answer(ref("RecordsResponse"), "One prediction per record."),
                **INFERENCE_ERRORS,
            },
        }
    },
    "/v2": _answers("ServerMetadata", "The server's metadata.", {}),
    "/v2/health/live": _answers("Live", "The server is live.", {}),
    "/v2/health/ready": {
        "get": {
            "responses": {
                "200": json_answer(ref("Ready"), "A model is loaded and serve's work runs."),
                "503": json_answer(ref("Ready"), "Not ready: `error` says why."),
            }
        }
    },
    "/v2/models/{name}": _answers(
        "ModelMetadata", "The served version's metadata.", {**NOT_FOUND, **NOT_READY}
    ),
    "/v2/models/{name}/versions/{version}": _answers(
        "ModelMetadata", "The version's metadata.", {**NOT_FOUND, **NOT_READY}
    ),
    "/v2/models/{name}/ready": _answers(
        "ModelReady", "The model is ready.", {**NOT_FOUND, **NOT_READY}
    ),
    "/v2/models/{name}/versions/{version}/ready": _answers(
        "ModelReady", "The version is ready.", {**NOT_FOUND, **NOT_READY}
    ),
    "/v2/repository/models/{name}/load": {
        "post": {
            "description": "Admin: resolve the champion alias again and swap to it. Needs "
            "`Authorization: Bearer <SERVE_ADMIN_TOKEN>`.",
            "responses": error_responses(
                {
                    401: "No token, or the wrong one.",
                    404: "The admin endpoints are off (no `SERVE_ADMIN_TOKEN`), or no such "
                    "model is served here.",
                }
            ),
        }
    },
}


def describe(document: ApiDocument) -> None:
    """Add serve's inference paths, and the protocol's schemas, to its app's document."""
    document.add(paths=PATHS, schemas=SCHEMAS)
