"""Feature schema and task inference, and the model's inputs and targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.errors import TrainingError
from services.trainer.schema import infer_card, model_inputs, parse_features, targets


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


def test_numbers_are_numeric_strings_and_booleans_categorical() -> None:
    card = infer_card(examples(["yes", "no", "no", "yes", "no", "yes"]))
    kinds = {f.name: f.kind for f in card.features}
    assert kinds == {"age": "numeric", "city": "categorical", "member": "categorical"}
    assert card.feature("city").categories == ["", "north", "south"]
    assert card.feature("member").categories == ["False", "True"]


@pytest.mark.parametrize(
    ("labels", "task"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2], "classification"),
        ([0.5, 1.25, 3.0], "regression"),
        (list(range(30)), "regression"),
    ],
)
def test_the_label_decides_the_task(labels: list, task: str) -> None:
    assert infer_card(examples(labels), max_classes=20).task == task


def test_settings_can_name_the_task_and_the_features() -> None:
    card = infer_card(
        examples([0, 1, 2, 0, 1, 2]), task="regression", features=parse_features("age")
    )
    assert card.task == "regression" and card.feature_names == ["age"]
    with pytest.raises(TrainingError, match="numeric or categorical"):
        parse_features("age:text")
    with pytest.raises(TrainingError, match="no examples carry"):
        infer_card(examples([0, 1, 0]), features=parse_features("height"))


def test_a_single_class_cannot_be_learnt() -> None:
    with pytest.raises(TrainingError, match="nothing to learn"):
        infer_card(examples(["a", "a", "a"]))


def test_inputs_are_one_column_per_feature_with_missing_values_filled() -> None:
    frame = examples([0, 1, 0])
    frame.loc[1, "feature.age"] = None
    card = infer_card(frame)
    inputs = model_inputs(card, frame.drop(columns=["feature.member"]))
    assert inputs["age"].shape == (3, 1) and inputs["age"].dtype == np.float32
    assert inputs["age"][1, 0] == 0.0
    assert inputs["city"][:, 0].tolist() == ["north", "south", ""]
    assert inputs["member"][:, 0].tolist() == ["", "", ""], "absent column: all missing"


def test_targets_are_class_indexes_or_values() -> None:
    card = infer_card(examples(["no", "yes", "no"]))
    assert targets(card, pd.Series(["yes", "no", "maybe"])).tolist() == [1, 0, -1]
    regression = infer_card(examples([0.5, 1.5, 2.5]))
    assert targets(regression, pd.Series([0.5, 2])).dtype == np.float32
