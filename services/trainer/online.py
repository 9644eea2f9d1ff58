"""The online learner: an online model that learns from every labelled example as it arrives.

The batch champion answers a new concept only after its trigger, a window of examples since
the onset, a fit and a swap: thousands of events. An online model has learned from each
labelled example by the time the next request comes, so after a drift it is right again within
hundreds of examples; it is usually a little less accurate than the batch model on a concept
both know. :class:`~driftloop.services.trainer.arbitration.Arbiter` decides which of the two
answers, from their answers on the same examples.

The model is river's adaptive random forest (``ARFClassifier``: ten Hoeffding trees, each
replaced when an ADWIN detector sees its error rise), which handles numeric and categorical
(string) features as they come, and labels of any hashable type. Every example is scored
before it is learned from (prequential), so the score is an honest estimate of the answers
the model would have given.

Example:
    >>> learner = OnlineLearner()
    >>> learner.learn({"x": 1.0}, "a") is None  # nothing learned yet: no answer
    True
    >>> for _ in range(50):
    ...     _ = learner.learn({"x": 1.0}, "a"), learner.learn({"x": -1.0}, "b")
    >>> learner.predict({"x": 0.9}), learner.updates
    ('a', 101)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from river import forest

from driftloop.online_snapshots import river_features


def adaptive_forest(seed: int = 42) -> Any:
    """The default online model: river's ``ARFClassifier`` with its defaults."""
    return forest.ARFClassifier(seed=seed)


class OnlineLearner:
    """A river classifier learning one labelled example at a time.

    Parameters:
        make_model: builds the river model (default :func:`adaptive_forest`).
    """

    def __init__(self, make_model: Callable[[], Any] = adaptive_forest) -> None:
        self.model = make_model()
        self.updates = 0

    def predict(self, features: Mapping[str, Any]) -> Hashable | None:
        """The model's answer for ``features`` (None before it has learned anything)."""
        return self.model.predict_one(river_features(features))

    def learn(self, features: Mapping[str, Any], label: Hashable) -> Hashable | None:
        """Score ``features`` (the answer the model gives before it sees ``label``), then
        learn from the example; returns that answer."""
        x = river_features(features)
        answer = self.model.predict_one(x)
        self.model.learn_one(x, label)
        self.updates += 1
        return answer
