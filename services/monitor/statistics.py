"""Per-feature drift tests of a window of live values against a reference sketch.

Numeric features (against the sketch's 101 quantiles):

- **KS** (the verdict): the largest gap between the window's empirical CDF and the
  reference CDF, which the quantiles bound to a percentile bracket at every point (right
  and left limits, so discrete features with ties are not mistaken for drift); see
  :func:`ks_statistic`. The p-value uses the two-sample effective size ``n m / (n + m)``,
  since the reference is itself a sample of ``m`` rows [1].
- **Wasserstein-1**, in reference standard deviations: the mean gap between the window's and
  the reference's quantile functions [2].
- **PSI** over the reference's deciles [3].

Categorical features (against the sketch's frequencies):

- **chi-squared** (the verdict): the two-sample homogeneity test of the window's counts with
  the reference's, categories the reference never saw kept as their own cells, so unseen
  values count as drift mass instead of being dropped [4].
- **Jensen-Shannon** distance (base 2, in [0, 1]) [5].

A window tests several features at once; :func:`compare_window` holds the family-wise error at
``alpha`` with Holm's step-down or Bonferroni's correction [6].

References:
    [1] Massey (1951), The Kolmogorov-Smirnov test for goodness of fit, JASA 46(253).
    [2] Ramdas, Garcia, Cuturi (2017), On Wasserstein two-sample testing, Entropy 19(2).
    [3] Yurdakul (2018), Statistical properties of population stability index, WMU.
    [4] Pearson (1900); the r x 2 contingency test, e.g. Agresti, Categorical Data Analysis.
    [5] Lin (1991), Divergence measures based on the Shannon entropy, IEEE Trans. IT 37(1).
    [6] Holm (1979), A simple sequentially rejective multiple test procedure, Scand. J. Stat.

Example:
    >>> sketch = FeatureSketch.numeric([i / 100 for i in range(1000)])
    >>> result = numeric_test("x", sketch, [i / 100 + 5 for i in range(300)], alpha=0.01)
    >>> result.statistic, result.drifted
    ('ks', True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from driftloop.reference import QUANTILES, FeatureSketch, ReferenceSketch

Correction = Literal["holm", "bonferroni"]
PREDICTION = "prediction"
_LEVELS = np.linspace(0.0, 1.0, QUANTILES)
_EPS = 1e-4


@dataclass(frozen=True)
class FeatureTest:
    """One feature's test in one window.

    Parameters:
        feature: the feature's name, or ``prediction`` for the model's outputs.
        statistic: the test that decides (``ks`` or ``chi2``).
        score: its statistic.
        threshold: the statistic's critical value at the feature's corrected level.
        p_value: the test's p-value.
        drifted: whether the test rejects at the corrected level.
        scores: every score computed (ks, wasserstein, psi or chi2, js, unseen share).
        alpha: the corrected level the feature was tested at.
        size: the values tested (missing and malformed values are not).
    """

    feature: str
    statistic: str
    score: float
    threshold: float
    p_value: float
    drifted: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.0
    size: int = 0

    def as_event(self) -> dict[str, Any]:
        """The ``features[]`` item of a drift event."""
        return {
            "feature": self.feature,
            "statistic": self.statistic,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "p_value": float(min(max(self.p_value, 0.0), 1.0)),
            "drifted": self.drifted,
        }


# --- numeric ----------------------------------------------------------------------------


def reference_cdf(quantiles: np.ndarray, x: np.ndarray, side: str = "right") -> np.ndarray:
    """The reference CDF at ``x``, linear between the quantiles.

    ``side="right"`` gives F(x), ``"left"`` the left limit F(x-): with repeated quantiles (a
    discrete feature) the CDF jumps, and a test must compare both limits.
    """
    last = len(quantiles) - 1
    k = np.searchsorted(quantiles, x, side=side)  # type: ignore[call-overload]  # side: str
    lower = np.clip(k - 1, 0, last)
    upper = np.clip(k, 0, last)
    span = quantiles[upper] - quantiles[lower]
    fraction = np.where(span > 0, (x - quantiles[lower]) / np.where(span > 0, span, 1), 0.0)
    cdf = (lower + np.clip(fraction, 0.0, 1.0)) / last
    return np.where(k == 0, 0.0, np.where(k > last, 1.0, cdf))


def ks_statistic(quantiles: np.ndarray, values: np.ndarray) -> float:
    """The KS distance between ``values``' empirical CDF and the reference's.

    101 quantiles pin the reference CDF down only to a percentile bracket: at ``x`` between
    the quantiles of levels ``j/100`` and ``(j+1)/100``, ``F(x)`` is somewhere in between. The
    distance is taken to that bracket (and the same for the left limit ``F(x-)``), not to a
    point inside it, so the test never reads the sketch's resolution as drift: the false-alarm
    budget holds for discrete features with many ties too, at a cost in power of at most one
    percentile of KS distance.
    """
    points, counts = np.unique(values, return_counts=True)
    after = np.cumsum(counts) / values.size
    before = after - counts / values.size
    gap = np.zeros(points.size)
    for side, empirical in (("right", after), ("left", before)):
        low, high = cdf_bracket(quantiles, points, side)
        gap = np.maximum(gap, np.maximum(empirical - high, low - empirical))
    return float(gap.max())


def cdf_bracket(
    quantiles: np.ndarray, x: np.ndarray, side: str = "right"
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the reference's F(x) (``right``) or F(x-) (``left``)."""
    last = len(quantiles) - 1
    # quantiles <= x (right) or < x (left)
    k = np.searchsorted(quantiles, x, side=side)  # type: ignore[call-overload]  # side: str
    low = np.clip(k - 1, 0, last) / last
    high = np.clip(k, 0, last) / last
    # Below the reference's minimum nothing is; at or past its maximum, everything.
    low = np.where(k == 0, 0.0, np.where(k > last, 1.0, low))
    high = np.where(k == 0, 0.0, np.where(k > last, 1.0, high))
    return low, high


def ks_critical(alpha: float, n: int, m: int) -> tuple[float, int]:
    """The KS distance rejected at ``alpha`` for ``n`` live values against ``m`` reference rows."""
    effective = max(1, round(n * m / (n + m)) if m else n)
    return float(stats.kstwo.isf(alpha, effective)), effective


def psi(quantiles: np.ndarray, values: np.ndarray) -> float:
    """Population stability index over the reference's deciles."""
    edges = quantiles[:: (QUANTILES - 1) // 10]
    expected = np.diff(reference_cdf(quantiles, edges))
    expected[0] += reference_cdf(quantiles, edges[:1], "left")[0]
    expected = np.maximum(expected, _EPS)
    inner = np.searchsorted(edges[1:-1], values, side="right")
    actual = np.maximum(np.bincount(inner, minlength=len(expected)) / values.size, _EPS)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def wasserstein(sketch: FeatureSketch, values: np.ndarray) -> float:
    """Wasserstein-1 between the quantile functions, in reference standard deviations."""
    gap = float(np.mean(np.abs(np.quantile(values, _LEVELS) - np.asarray(sketch.quantiles))))
    return gap / sketch.std if sketch.std else gap


def numeric_values(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (booleans count; strings and nulls do not)."""
    kept = []
    for value in values:
        if isinstance(value, bool | int | float):
            kept.append(float(value))
    array = np.asarray(kept, dtype=np.float64)
    return array[np.isfinite(array)]


def numeric_test(
    name: str, sketch: FeatureSketch, values: Sequence[Any], alpha: float
) -> FeatureTest:
    """KS (the verdict), Wasserstein and PSI of ``values`` against a numeric ``sketch``."""
    live = numeric_values(values)
    if live.size == 0 or not sketch.quantiles:
        return FeatureTest(name, "ks", 0.0, 1.0, 1.0, scores={}, alpha=alpha, size=int(live.size))
    quantiles = np.asarray(sketch.quantiles, dtype=np.float64)
    distance = ks_statistic(quantiles, live)
    reference_n = sketch.count - sketch.missing
    threshold, effective = ks_critical(alpha, int(live.size), reference_n)
    p_value = float(stats.kstwo.sf(distance, effective))
    scores = {
        "ks": distance,
        "wasserstein": wasserstein(sketch, live),
        "psi": psi(quantiles, live),
    }
    return FeatureTest(
        name, "ks", distance, threshold, p_value, p_value < alpha, scores, alpha, int(live.size)
    )


# --- categorical ------------------------------------------------------------------------


def categorical_test(
    name: str, sketch: FeatureSketch, values: Sequence[Any], alpha: float
) -> FeatureTest:
    """Two-sample chi-squared (the verdict) and Jensen-Shannon against category frequencies."""
    live = Counter(str(v) for v in values if v is not None)
    n = sum(live.values())
    m = max(sketch.count - sketch.missing, 1)
    categories = sorted(set(sketch.frequencies) | set(live))
    if n == 0 or not categories:
        return FeatureTest(name, "chi2", 0.0, 0.0, 1.0, alpha=alpha, size=n)
    observed = np.array([live.get(c, 0) for c in categories], dtype=np.float64)
    reference = np.array([sketch.frequencies.get(c, 0.0) * m for c in categories])
    # Homogeneity of two samples: cells empty in both carry no information.
    cells = (observed + reference) > 0
    observed, reference = observed[cells], reference[cells]
    ratio = np.sqrt(m / n)
    chi2 = float(np.sum((observed * ratio - reference / ratio) ** 2 / (observed + reference)))
    dof = max(int(cells.sum()) - 1, 1)
    threshold = float(stats.chi2.isf(alpha, dof))
    p_value = float(stats.chi2.sf(chi2, dof))
    unseen = sum(k for c, k in live.items() if c not in sketch.frequencies) / n
    js = float(jensenshannon(observed / n, reference / m, base=2))
    scores = {"chi2": chi2, "js": 0.0 if np.isnan(js) else js, "unseen": unseen}
    return FeatureTest(name, "chi2", chi2, threshold, p_value, p_value < alpha, scores, alpha, n)


# --- a whole window ---------------------------------------------------------------------


def feature_test(
    name: str, sketch: FeatureSketch, values: Sequence[Any], alpha: float
) -> FeatureTest:
    if sketch.kind == "categorical":
        return categorical_test(name, sketch, values, alpha)
    return numeric_test(name, sketch, values, alpha)


def compare_window(
    reference: ReferenceSketch,
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any] | None,
    alpha: float,
    correction: Correction = "holm",
) -> list[FeatureTest]:
    """Test every feature of ``reference`` (and the predictions) in one window.

    Parameters:
        reference: the sketch of the model version that made the predictions.
        rows: the window's feature dicts.
        predictions: the model's outputs for the rows; tested when the sketch has them.
        alpha: the family-wise level: the chance, on a window without drift, that any
            feature is called drifted.
        correction: ``holm`` (step-down, never less powerful) or ``bonferroni``.

    Returns one :class:`FeatureTest` per feature, in the reference's order, the prediction
    last; ``alpha`` and ``threshold`` of each are those of its corrected level.
    """
    columns: list[tuple[str, FeatureSketch, list[Any]]] = [
        (name, sketch, [row.get(name) for row in rows])
        for name, sketch in reference.features.items()
    ]
    if predictions is not None and reference.prediction is not None:
        columns.append((PREDICTION, reference.prediction, list(predictions)))
    tests = len(columns)
    if tests == 0:
        return []
    # First at the Bonferroni level, which is Holm's first step too.
    first = [feature_test(name, sketch, values, alpha / tests) for name, sketch, values in columns]
    if correction == "bonferroni":
        return first
    # Holm: the i-th smallest p-value (from 0) is tested at alpha / (tests - i), while the
    # ones before it were rejected; the rest keep their verdict of "no drift".
    order = sorted(range(tests), key=lambda i: first[i].p_value)
    results = list(first)
    for rank, i in enumerate(order):
        level = alpha / (tests - rank)
        name, sketch, values = columns[i]
        retest = first[i] if rank == 0 else feature_test(name, sketch, values, level)
        if not retest.drifted:
            for j in order[rank:]:
                results[j] = replace(results[j], drifted=False)
            results[i] = replace(retest, drifted=False)
            break
        results[i] = retest
    return results
