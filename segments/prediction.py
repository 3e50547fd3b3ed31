"""Predictive scores: a classifier of "does the target event happen within the horizon" trained on features as of
one cutoff and judged on a later one it never saw, beside a one-feature baseline. Pure scikit-learn, no database.

Why a time-based holdout: people's behaviour drifts, and a random split of one snapshot shares its moment with
the training rows, which flatters a model that will always be applied to a future it has not seen.
scikit-learn and joblib are imported where they are used (see segments/clustering.py).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

# The features every profile gets as of a cutoff (segments.services.prediction builds them in SQL).
FEATURES = ["recency_days", "tenure_days", "events_7d", "events_30d", "events_90d", "active_days_30d",
            "target_events_30d", "target_events_90d", "target_events_all", "days_since_target", "orders",
            "revenue", "distinct_events_90d"]
# The baseline: recency alone, the one number every marketer already looks at.
BASELINE_FEATURE = "recency_days"
# Permutation importance on at most this many holdout rows: enough for a stable ranking, a few seconds at most.
IMPORTANCE_ROWS = 5_000
SEED = 0


class NotLearnable(ValueError):
    """The data cannot train or judge a model (too few rows, or only one outcome); the message says which."""


@dataclass
class Trained:
    algorithm: str
    estimator: object
    auc: float
    brier: float
    base_rate: float
    baseline_auc: float
    importances: list[dict]
    holdout_scores: np.ndarray


# Fewer people of either outcome and neither the validation split nor the AUC says anything.
MIN_OF_EACH_OUTCOME = 10


def _check(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if len(y) < 50:
        raise NotLearnable(f"{what}: {len(y)} people, at least 50 are needed")
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise NotLearnable(f"{what}: every one of the {len(y)} people has the same outcome "
                           f"({'did' if positives else 'did not do'} the target event)")
    rarer = min(positives, len(y) - positives)
    if rarer < MIN_OF_EACH_OUTCOME:
        raise NotLearnable(f"{what}: only {rarer} of the {len(y)} people have the rarer outcome, at least "
                           f"{MIN_OF_EACH_OUTCOME} are needed")


def _candidates() -> dict[str, object]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    # log1p first: counts and money are heavy-tailed, and a linear model should not be driven by a few whales.
    logistic = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                             LogisticRegression(max_iter=1000, C=1.0))
    boosting = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.08, max_leaf_nodes=31,
                                              early_stopping=True, validation_fraction=0.1,
                                              random_state=SEED)
    return {"logistic_regression": logistic, "gradient_boosting": boosting}


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def train(*, train_x: np.ndarray, train_y: np.ndarray, holdout_x: np.ndarray, holdout_y: np.ndarray,
          algorithm: str = "auto") -> Trained:
    """Fits the algorithm (or, for "auto", each candidate, keeping the better on a validation fifth of the
    training rows, then refitting it on all of them) and judges it on the holdout.

    Raises NotLearnable when either set is too small or has a single outcome."""
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss
    from sklearn.model_selection import train_test_split

    _check(train_x, train_y, "training cutoff")
    _check(holdout_x, holdout_y, "holdout cutoff")
    candidates = _candidates()
    if algorithm == "auto":
        fit_x, val_x, fit_y, val_y = train_test_split(train_x, train_y, test_size=0.2, random_state=SEED,
                                                      stratify=train_y)
        validation = {name: _auc(val_y, est.fit(fit_x, fit_y).predict_proba(val_x)[:, 1])
                      for name, est in candidates.items()}
        algorithm = max(validation, key=validation.get)
        candidates = _candidates()
    estimator = candidates[algorithm].fit(train_x, train_y)
    scores = estimator.predict_proba(holdout_x)[:, 1]
    baseline_column = FEATURES.index(BASELINE_FEATURE)
    baseline = LogisticRegression().fit(np.log1p(train_x[:, [baseline_column]]), train_y)
    baseline_scores = baseline.predict_proba(np.log1p(holdout_x[:, [baseline_column]]))[:, 1]
    rows = np.random.default_rng(SEED).permutation(len(holdout_y))[:IMPORTANCE_ROWS]
    importance = permutation_importance(estimator, holdout_x[rows], holdout_y[rows], scoring="roc_auc",
                                        n_repeats=3, random_state=SEED)
    importances = sorted(({"feature": name, "importance": round(float(value), 4)}
                          for name, value in zip(FEATURES, importance.importances_mean)),
                         key=lambda row: -row["importance"])
    return Trained(algorithm=algorithm, estimator=estimator, auc=_auc(holdout_y, scores),
                   brier=float(brier_score_loss(holdout_y, scores)), base_rate=float(holdout_y.mean()),
                   baseline_auc=_auc(holdout_y, baseline_scores), importances=importances,
                   holdout_scores=scores)


def auc_of(estimator: object, x: np.ndarray, y: np.ndarray) -> float:
    """An earlier version's AUC on another holdout: the comparison that decides whether a new version may
    replace it."""
    return _auc(y, estimator.predict_proba(x)[:, 1])


def score(estimator: object, x: np.ndarray) -> np.ndarray:
    return estimator.predict_proba(x)[:, 1] if len(x) else np.empty(0)


def histogram(scores: np.ndarray) -> list[int]:
    """Counts of scores in ten bins of width 0.1."""
    return np.histogram(scores, bins=10, range=(0.0, 1.0))[0].tolist()


def dumps(estimator: object) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def loads(artifact: bytes) -> object:
    import joblib

    # Only ever artifacts this module wrote into the product's own database.
    return joblib.load(io.BytesIO(bytes(artifact)))
