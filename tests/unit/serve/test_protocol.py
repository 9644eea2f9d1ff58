"""The wire formats: decoding checks against the card, encoding of outputs and events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftloop.errors import InvalidInput, MalformedRequest
from driftloop.events import EventType
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.schemas import EventSchemas
from driftloop.services.serve.protocol import (
    PACKED,
    Predictions,
    decode_infer,
    decode_records,
    infer_response,
    model_metadata,
    prediction_event,
    prediction_rows,
    records_response,
    requested_outputs,
    row_ids,
)

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="region", kind="categorical", categories=["north", "south"]),
    ],
    classes=[0, 1],
)
RECORD = {"age": 31, "region": "north"}


def tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data), 1], "data": data}


def oip(**overrides: dict[str, Any]) -> dict[str, Any]:
    inputs = {
        "age": tensor("age", "FP32", [31.0, 40]),
        "region": tensor("region", "BYTES", ["north", "x"]),
    }
    inputs |= overrides
    return {"inputs": [t for t in inputs.values() if t]}


def test_records_decode_one_a_list_and_a_wrapped_list() -> None:
    batch, request_id = decode_records(RECORD | {"request_id": "r-1"}, CARD)
    assert (batch.rows, batch.columns, request_id) == (1, {"age": [31], "region": ["north"]}, "r-1")
    batch, request_id = decode_records([RECORD, RECORD | {"age": 2.5}], CARD)
    assert batch.rows == 2 and batch.columns["age"] == [31, 2.5] and request_id is None
    batch, request_id = decode_records({"records": [RECORD], "request_id": "r-2"}, CARD)
    assert batch.rows == 1 and request_id == "r-2"
    assert batch.row_features() == [RECORD]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (RECORD | {"age": "old"}, "age", "is a number: got the string 'old' (rule: feature_type)"),
        (RECORD | {"age": True}, "age", "is a number: got the boolean true"),
        (RECORD | {"age": float("nan")}, "age", "not_finite"),
        (RECORD | {"age": float("inf")}, "age", "not_finite"),
        (RECORD | {"region": 1}, "region", "is a string: got 1"),
        ({"age": 1}, "region", "missing"),
        (RECORD | {"colour": "red"}, "colour", "not a feature"),
        ([], "records", "empty"),
        ([RECORD, RECORD | {"age": None}], "records[1].age", "null"),
        ([RECORD, 3], "records[1]", "not an object"),
        (RECORD | {"request_id": 5}, "request_id", "string"),
        ([RECORD, RECORD, RECORD | {"age": float("-inf")}], "records[2].age", "finite"),
        ([RECORD, RECORD | {"region": None}], "records[1].region", "null_feature"),
        (RECORD | {"age": 10**400}, "age", "a number of 401 digits (rule: not_finite)"),
    ],
)
def test_records_that_do_not_fit_name_the_field(body: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_records(body, CARD)
    assert raised.value.field == field
    assert field.split(".")[-1].split("[")[0] in str(raised.value) and words in str(raised.value)


def test_valid_records_become_one_float32_column_per_feature() -> None:
    batch, _ = decode_records([RECORD, RECORD | {"age": 2.5, "region": "south"}], CARD)
    arrays = batch.arrays(CARD)
    assert list(arrays) == ["age", "region"]
    assert arrays["age"].dtype == np.float32 and arrays["age"].shape == (2, 1)
    assert arrays["age"].flags.c_contiguous and arrays["age"].ravel().tolist() == [31.0, 2.5]
    assert arrays["region"].ravel().tolist() == ["north", "south"]


def test_packed_inputs_put_the_numeric_features_side_by_side_whatever_the_decoder() -> None:
    card = ModelCard(
        task="regression",
        features=[FeatureSpec(name="b"), FeatureSpec(name="a"), *CARD.features[1:]],
    )
    records = [{"b": 1, "a": 2.5, "region": "north"}, {"b": -3, "a": 4, "region": "south"}]
    columns = {
        "inputs": [
            tensor("b", "INT64", [1, -3]),
            tensor("a", "FP64", [2.5, 4]),
            tensor("region", "BYTES", ["north", "south"]),
        ]
    }
    for batch in (decode_records(records, card)[0], decode_infer(columns, card)[0]):
        arrays = batch.arrays(card, packed=True)
        assert set(arrays) == {PACKED, "region"}
        table = arrays[PACKED]
        assert table.dtype == np.float32 and table.flags.c_contiguous
        assert table.tolist() == [[1.0, 2.5], [-3.0, 4.0]]  # the card's order: b, a
        assert arrays["region"].ravel().tolist() == ["north", "south"]


def test_records_body_of_the_wrong_shape_is_malformed() -> None:
    with pytest.raises(MalformedRequest):
        decode_records("a string", CARD)


def test_oip_decodes_columns_in_card_order_with_flat_or_nested_data() -> None:
    batch, request_id = decode_infer(oip() | {"id": "r-9"}, CARD)
    assert batch.rows == 2 and batch.columns == {"age": [31.0, 40], "region": ["north", "x"]}
    assert request_id == "r-9"
    nested = oip(age=tensor("age", "INT64", [[31], [40]]))
    assert decode_infer(nested, CARD)[0].columns["age"] == [31, 40]
    flat = oip(
        age=tensor("age", "FP64", [1.0, 2.0], [2]),
        region=tensor("region", "BYTES", ["a", "b"], [2]),
    )
    assert decode_infer(flat, CARD)[0].rows == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (oip(age=tensor("age", "FP32", ["31", 1])), "inputs.age", "FP32: got the string '31'"),
        (oip(age=tensor("age", "FP32", [1, float("nan")])), "inputs.age", "row 1, rule: not_fin"),
        (oip(age=tensor("age", "BOOL", [True, False])), "inputs.age", "numeric"),
        (oip(age=tensor("age", "INT32", [1.5, 1])), "inputs.age", "INT32"),
        (oip(age=tensor("age", "UINT8", [-1, 1])), "inputs.age", "UINT8"),
        (oip(age=tensor("age", "BYTES", ["a", "b"])), "inputs.age", "numeric"),
        (oip(age=tensor("age", "FLOAT", [1, 2])), "inputs.age", "datatype"),
        (oip(region=tensor("region", "FP32", [1, 2])), "inputs.region", "categorical"),
        (oip(region=tensor("region", "BYTES", [1, 2])), "inputs.region", "BYTES"),
        (oip(age=tensor("age", "FP32", [1.0], [2, 1])), "inputs.age", "shape"),
        (oip(age=tensor("age", "FP32", [1.0, 2.0], [1, 2])), "inputs.age", "shape"),
        (oip(age=tensor("age", "FP32", [1.0, 2.0, 3.0])), "inputs.region", "rows"),
        (oip(age=tensor("age", "FP32", [], [0, 1])), "inputs.age", "empty"),
        (oip(region={}), "inputs.region", "missing"),
        (oip(colour=tensor("colour", "BYTES", ["r", "g"])), "inputs.colour", "not a feature"),
        ({"inputs": []}, "inputs", "non-empty"),
        ({"inputs": [{"datatype": "FP32"}]}, "inputs[0]", "name"),
        (oip() | {"id": ""}, "id", "string"),
    ],
)
def test_oip_requests_that_do_not_fit_name_the_field(body: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_infer(body, CARD)
    assert raised.value.field == field and words in str(raised.value)


def test_requested_outputs() -> None:
    assert requested_outputs({}, ("predict", "scores")) == {"predict", "scores"}
    assert requested_outputs({"outputs": [{"name": "scores"}]}, ("predict", "scores")) == {"scores"}
    with pytest.raises(InvalidInput):
        requested_outputs({"outputs": [{"name": "logits"}]}, ("predict", "scores"))


def test_outputs_encode_as_labels_scores_and_events_that_match_the_schema() -> None:
    batch, _ = decode_records([RECORD, RECORD | {"region": "south"}], CARD)
    predictions = Predictions.decode(CARD, np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32))
    assert predictions.values == [0, 1]
    ids = row_ids("r", 2)
    assert ids == ["r-0", "r-1"] and row_ids("r", 1) == ["r"]

    response = infer_response("m", "3", "r", ids, predictions)
    predict, scores = response["outputs"]
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "3", "r")
    assert predict == {"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]}
    assert scores["shape"] == [2, 2] and scores["data"] == pytest.approx([0.9, 0.1, 0.2, 0.8])

    plain = records_response("m", "3", "r", ids, predictions)
    assert plain["predictions"][1]["request_id"] == "r-1"
    assert plain["predictions"][1]["scores"] == pytest.approx({"0": 0.2, "1": 0.8})

    rows = prediction_rows("m", "3", ids, batch, predictions, 0.5)
    events = [prediction_event(row) for row in rows]
    schemas = EventSchemas()
    for event in events:
        schemas.validate(EventType.PREDICTION, event)
    assert [e["features"]["region"] for e in events] == ["north", "south"]


def test_regression_outputs_and_metadata() -> None:
    card = ModelCard(task="regression", features=[FeatureSpec(name="x")])
    predictions = Predictions.decode(card, np.array([[1.5], [2.0]], dtype=np.float32))
    assert predictions.values == [1.5, 2.0] and predictions.scores is None
    response = infer_response("m", "1", "r", ["r-0", "r-1"], predictions)
    assert [o["name"] for o in response["outputs"]] == ["predict"]
    metadata = model_metadata("m", "1", CARD)
    assert metadata["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "region", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert metadata["versions"] == ["1"]


# --- the contract's types: int, bool, nullable ----------------------------------------------

TYPED = ModelCard(
    task="classification",
    classes=[0, 1],
    version=3,
    source="declared",
    features=[
        FeatureSpec(name="term", type="int"),
        FeatureSpec(name="amount"),
        FeatureSpec(name="verified", kind="boolean"),
        FeatureSpec(name="grade", kind="categorical", categories=["A", "B"], nullable=True),
        FeatureSpec(name="income", nullable=True),
    ],
)
LOAN = {"term": 36, "amount": 1200.5, "verified": True, "grade": "A", "income": 3000}


def test_booleans_are_accepted_logged_as_booleans_and_fed_as_one_and_zero() -> None:
    records = [LOAN, LOAN | {"verified": False}]
    for body in (LOAN, records, {"records": records, "request_id": "r"}):
        batch, _ = decode_records(body, TYPED)
        assert [row["verified"] for row in batch.row_features()] == [True, False][: batch.rows]
        assert batch.arrays(TYPED)["verified"].dtype == np.float32
        assert batch.arrays(TYPED)["verified"].ravel().tolist() == [1.0, 0.0][: batch.rows]
        # packed: term, amount, verified, income side by side, in the card's order
        packed = batch.arrays(TYPED, packed=True)
        assert set(packed) == {PACKED, "grade"}
        assert packed[PACKED].tolist()[0] == [36.0, 1200.5, 1.0, 3000.0]
    rows = prediction_rows(
        "m", "1", ["a", "b"], decode_records(records, TYPED)[0],
        Predictions.decode(TYPED, np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)), 0.1,
    )  # fmt: skip
    events = [prediction_event(row) for row in rows]
    for event in events:
        EventSchemas().validate(EventType.PREDICTION, event)
    assert [e["features"]["verified"] for e in events] == [True, False]
    assert all(type(e["features"]["verified"]) is bool for e in events)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"term": 36.5}, "term", "is an integer: got 36.5 (rule: feature_type)"),
        ({"term": 1 << 70}, "term", "not_finite"),
        ({"term": "36"}, "term", "feature_type"),
        ({"term": True}, "term", "an integer: got the boolean true"),
        ({"verified": 1}, "verified", "is a boolean: got 1 (rule: feature_type)"),
        ({"verified": "yes"}, "verified", "is a boolean: got the string 'yes'"),
        ({"verified": None}, "verified", "null_feature"),
        ({"amount": True}, "amount", "feature_type"),
        ({"grade": 1}, "grade", "is a string: got 1"),
        ({"income": float("nan")}, "income", "not_finite"),
        ({"income": "3000"}, "income", "feature_type"),
    ],
)
def test_typed_values_the_contract_refuses(change: dict[str, Any], field: str, words: str) -> None:
    for body, named in ((LOAN | change, field), ([LOAN, LOAN | change], f"records[1].{field}")):
        with pytest.raises(InvalidInput) as raised:
            decode_records(body, TYPED)
        assert raised.value.field == named and words in str(raised.value)
        assert str(raised.value).startswith(named)


def test_ints_take_whole_floats_and_floats_take_ints_as_sent() -> None:
    batch, _ = decode_records(LOAN | {"term": 36.0, "amount": 12}, TYPED)
    assert batch.row_features() == [LOAN | {"term": 36.0, "amount": 12}]
    assert batch.arrays(TYPED)["term"].tolist() == [[36.0]]


def test_nulls_and_left_out_nullable_features_are_null_in_the_event_and_zero_for_the_model() -> (
    None
):
    left_out = {k: v for k, v in LOAN.items() if k not in ("grade", "income")}
    for body in (left_out, LOAN | {"grade": None, "income": None}, [LOAN, left_out]):
        batch, _ = decode_records(body, TYPED)
        row = batch.row_features()[-1]
        assert row == left_out | {"grade": None, "income": None}
        arrays = batch.arrays(TYPED)
        assert arrays["grade"].ravel().tolist()[-1] == ""  # the out-of-vocabulary bucket
        assert arrays["income"].ravel().tolist()[-1] == 0.0
        assert batch.arrays(TYPED, packed=True)[PACKED].tolist()[-1] == [36.0, 1200.5, 1.0, 0.0]
    with pytest.raises(InvalidInput) as raised:
        decode_records({k: v for k, v in LOAN.items() if k != "term"}, TYPED)
    assert raised.value.field == "term" and "missing_feature" in str(raised.value)


def test_a_number_past_float32_is_accepted_and_fed_as_the_trainer_feeds_it() -> None:
    batch, _ = decode_records(LOAN | {"amount": 1e300}, TYPED)
    assert batch.row_features()[0]["amount"] == 1e300
    assert batch.arrays(TYPED)["amount"].tolist() == [[0.0]]


def test_oip_takes_bool_for_booleans_nulls_where_nullable_and_checks_types_by_contract() -> None:
    def request(**changes: dict[str, Any]) -> dict[str, Any]:
        inputs = {
            "term": tensor("term", "INT64", [36, 60]),
            "amount": tensor("amount", "FP64", [1.5, 2]),
            "verified": tensor("verified", "BOOL", [True, False]),
            "grade": tensor("grade", "BYTES", ["A", None]),
            "income": tensor("income", "FP32", [None, 10.0]),
        } | changes
        return {"inputs": [t for t in inputs.values() if t]}

    batch, _ = decode_infer(request(), TYPED)
    assert batch.columns["verified"] == [True, False]
    assert [row["grade"] for row in batch.row_features()] == ["A", None]
    assert batch.arrays(TYPED)["verified"].ravel().tolist() == [1.0, 0.0]
    assert batch.arrays(TYPED)["grade"].ravel().tolist() == ["A", ""]
    assert batch.arrays(TYPED, packed=True)[PACKED].tolist() == [
        [36.0, 1.5, 1.0, 0.0],
        [60.0, 2.0, 0.0, 10.0],
    ]
    left_out = decode_infer(request(income={}), TYPED)[0]  # a nullable tensor left out
    assert left_out.columns["income"] == [None, None]
    whole = decode_infer(request(term=tensor("term", "FP32", [36.0, 60.0])), TYPED)[0]
    assert whole.columns["term"] == [36.0, 60.0]

    refused = [
        (request(term=tensor("term", "FP32", [36.0, 36.5])), "inputs.term", "row 1, rule: feature"),
        (request(verified=tensor("verified", "INT64", [1, 0])), "inputs.verified", "BOOL, not"),
        (request(verified=tensor("verified", "BOOL", [1, 0])), "inputs.verified", "BOOL: got 1"),
        (request(verified=tensor("verified", "BOOL", [True, None])), "inputs.verified", "null"),
        (request(amount=tensor("amount", "BOOL", [True, True])), "inputs.amount", "numeric"),
        (request(grade=tensor("grade", "BYTES", ["A", 1])), "inputs.grade", "BYTES: got 1"),
        (request(term={}), "inputs.term", "missing_feature"),
    ]
    for body, field, words in refused:
        with pytest.raises(InvalidInput) as raised:
            decode_infer(body, TYPED)
        assert raised.value.field == field and words in str(raised.value), str(raised.value)


def test_metadata_gives_each_input_its_contract_type_and_the_contract() -> None:
    metadata = model_metadata("loans", "3", TYPED)
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        ("term", "INT64"),
        ("amount", "FP64"),
        ("verified", "BOOL"),
        ("grade", "BYTES"),
        ("income", "FP64"),
    ]
    contract = metadata["parameters"]["contract"]
    assert (contract["version"], contract["source"], contract["label_type"]) == (
        3,
        "declared",
        "int",
    )
    assert contract["features"][2] == {
        "name": "verified", "kind": "boolean", "type": "bool", "nullable": False
    }  # fmt: skip
    assert [f["nullable"] for f in contract["features"]] == [False, False, False, True, True]
