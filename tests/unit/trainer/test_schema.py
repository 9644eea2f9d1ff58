"""The fit's contract (in force, or inferred robustly), the card, and the model's inputs and
targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.contract import FeatureContract, FeatureSpec
from driftloop.errors import TrainingError
from driftloop.model_card import ModelCard
from driftloop.services.trainer.schema import (
    card_for,
    infer_card,
    model_inputs,
    parse_features,
    same_inputs,
    same_model,
    targets,
    window_contract,
)


def examples(labels: list) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame(
        {
            "feature.age": np.arange(n, dtype=float),
            "feature.city": ["north", "south", None][:n] * (n // 3) + ["north"] * (n % 3),
            "feature.member": [True, False] * (n // 2) + [True] * (n % 2),
            "label": labels,
        }
    )


def test_numbers_are_numeric_strings_categorical_and_booleans_boolean() -> None:
    # Booleans were categorical ("False"/"True") before contracts; now a 0/1 input.
    card = infer_card(examples(["yes", "no", "no", "yes", "no", "yes"]))
    kinds = {f.name: (f.kind, f.type, f.nullable) for f in card.features}
    assert kinds == {
        "age": ("numeric", "int", False),  # 0.0, 1.0, ...: integers, as JSON has them
        "city": ("categorical", "string", True),
        "member": ("boolean", "bool", False),
    }
    assert card.feature("city").categories == ["", "north", "south"]
    assert card.feature("member").categories == []
    assert (card.source, card.version, card.label_type) == ("inferred", 0, "string")


@pytest.mark.parametrize(
    ("labels", "task"),
    [
        (["a", "b", "a"] * 2, "classification"),
        ([True, False, True] * 2, "classification"),
        ([0, 1, 2] * 2, "classification"),
        ([0.5, 1.25, 3.0], "regression"),
        (list(range(30)), "regression"),
    ],
)
def test_the_label_decides_the_task(labels: list, task: str) -> None:
    assert infer_card(examples(labels), max_classes=20).task == task


def test_a_minority_of_bad_values_does_not_type_a_column() -> None:
    frame = examples([0, 1] * 50)
    frame = frame.astype({"feature.age": object, "label": object})
    frame.loc[7, "feature.age"] = "unknown"
    frame.loc[8, "label"] = "n/a"
    contract = window_contract(frame, model_name="m")
    assert contract.feature("age").type == "int" and contract.classes == [0, 1]


def test_settings_can_name_the_task_and_the_features() -> None:
    card = infer_card(
        examples([0, 1, 2, 0, 1, 2]), task="regression", features=parse_features("age")
    )
    assert card.task == "regression" and card.feature_names == ["age"]
    floats = examples([0.5, 1.5] * 3)
    assert infer_card(floats, task="classification").classes == [0.5, 1.5]
    assert parse_features("member:boolean")[0].kind == "boolean"
    with pytest.raises(TrainingError, match="numeric, categorical or boolean"):
        parse_features("age:text")
    with pytest.raises(TrainingError, match="no examples carry"):
        infer_card(examples([0, 1, 0] * 2), features=parse_features("height"))
    with pytest.raises(TrainingError, match="says categorical, its contract numeric"):
        infer_card(examples([0, 1, 0] * 2), features=parse_features("age:categorical"))


def test_a_contract_in_force_decides_and_settings_pick_among_its_features() -> None:
    contract = FeatureContract(
        model_name="m", version=3, source="declared", task="classification",
        classes=[0, 1, 2], features=[
            FeatureSpec(name="age", type="int"), FeatureSpec(name="member", kind="boolean"),
            FeatureSpec(name="city", kind="categorical", nullable=True, categories=["x"]),
        ],
    )  # fmt: skip
    frame = examples([0, 1] * 3)
    card = infer_card(frame, contract=contract)
    assert card.classes == [0, 1, 2], "every class the contract allows has an output"
    assert (card.version, card.source, card.model_name) == (3, "declared", "m")
    assert card.feature("city").categories == ["", "north", "south"], "learnt, not declared"
    assert card.feature_names == ["age", "member", "city"]
    assert infer_card(frame, contract=contract, features=parse_features("city")).feature_names == [
        "city"
    ]
    with pytest.raises(TrainingError, match="not a feature of the contract"):
        infer_card(frame, contract=contract, features=parse_features("height"))
    with pytest.raises(TrainingError, match="is for classification"):
        infer_card(frame, contract=contract, task="regression")


def test_a_single_class_cannot_be_learnt() -> None:
    with pytest.raises(TrainingError, match="nothing to learn"):
        infer_card(examples(["a", "a", "a"]))
    contract = FeatureContract(
        task="classification", classes=[0, 1], features=[FeatureSpec(name="age")]
    )
    with pytest.raises(TrainingError, match="every label in the window is 0: nothing to learn"):
        card_for(contract, examples([0, 0, 0]))


def test_inputs_are_one_column_per_feature_with_missing_values_filled() -> None:
    frame = examples([0, 1, 0] * 4)
    frame.loc[1, "feature.age"] = None
    card = infer_card(frame)
    inputs = model_inputs(card, frame.iloc[:3].drop(columns=["feature.member"]))
    assert inputs["age"].shape == (3, 1) and inputs["age"].dtype == np.float32
    assert inputs["age"][1, 0] == 0.0
    assert inputs["city"][:, 0].tolist() == ["north", "south", ""]
    assert inputs["member"].dtype == np.float32
    assert inputs["member"][:, 0].tolist() == [0.0, 0.0, 0.0], "absent column: all missing"


def test_a_boolean_feature_is_one_for_true_and_zero_for_false_or_null() -> None:
    card = ModelCard(
        task="regression", features=[FeatureSpec(name="member", kind="boolean", nullable=True)]
    )
    column = pd.Series([True, False, None, np.True_], dtype=object)
    inputs = model_inputs(card, pd.DataFrame({"feature.member": column}))
    assert inputs["member"][:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    plain_bools = pd.DataFrame({"feature.member": [True, False]})
    assert model_inputs(card, plain_bools)["member"][:, 0].tolist() == [1.0, 0.0]


def test_targets_are_class_indexes_or_values() -> None:
    card = infer_card(examples(["no", "yes", "no"] * 2))
    assert targets(card, pd.Series(["yes", "no", "maybe"])).tolist() == [1, 0, -1]
    regression = infer_card(examples([0.5, 1.5, 2.5]))
    assert targets(regression, pd.Series([0.5, 2])).dtype == np.float32


def test_warm_starts_and_recalls_compare_what_the_model_is() -> None:
    def card(**changes: object) -> ModelCard:
        base = ModelCard(
            task="classification", classes=[0, 1], features=[
                FeatureSpec(name="age", type="int"),
                FeatureSpec(name="city", kind="categorical", categories=["a", "b"]),
            ],
        )  # fmt: skip
        return base.model_copy(update=changes)

    champion = card()
    nullable_age = [FeatureSpec(name="age", type="float", nullable=True), champion.features[1]]
    assert same_model(card(features=nullable_age), champion), "the same layers"
    other_vocabulary = [champion.features[0], FeatureSpec(name="city", kind="categorical")]
    assert not same_model(card(features=other_vocabulary), champion)
    assert same_inputs(card(features=other_vocabulary), champion), "can still be scored"
    assert not same_model(card(classes=[False, True]), champion), "True == 1, not a class of it"
    boolean_city = [champion.features[0], FeatureSpec(name="city", kind="boolean")]
    assert not same_inputs(card(features=boolean_city), champion)
