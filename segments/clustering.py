"""Clustering profiles: K-Means on robustly scaled features for each k asked, k chosen by silhouette score, and
each cluster described in words. Pure numpy and scikit-learn, no database.

scikit-learn is imported where it is used (here and in segments/prediction.py, recommender.py): it costs a
process about 85 MB, and only the learning workers need it, not the web or the pipeline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Silhouette is quadratic in the rows: past this many it is measured on a random sample of them.
SILHOUETTE_SAMPLE = 10_000
# K-Means is fitted on at most this many rows, then every row is assigned to the nearest centre.
FIT_SAMPLE = 50_000
SEED = 0

# Words for a feature well above or below the population: (high, low). Other features read "high <name>".
WORDS = {
    "recency_days": ("lapsed", "recent"),
    "frequency_orders": ("frequent", "infrequent"),
    "monetary_value": ("high spend", "low spend"),
    "engagement_score": ("engaged", "disengaged"),
    "rfm_recency": ("recent", "lapsed"),
    "rfm_frequency": ("frequent", "infrequent"),
    "rfm_monetary": ("high spend", "low spend"),
}


@dataclass
class Clustering:
    k: int
    silhouettes: dict[int, float]
    labels: np.ndarray
    # k x features, in the features' own units.
    centroids: np.ndarray
    sample: int


def cluster(x: np.ndarray, *, k_min: int, k_max: int) -> Clustering:
    """K-Means for each k in [k_min, k_max] on RobustScaler-scaled features (median and interquartile range,
    so a few huge spenders do not squash everyone else together); the k with the best silhouette wins."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import RobustScaler

    rows = len(x)
    k_max = min(k_max, rows - 1)
    if rows < 3 or k_max < k_min:
        raise ValueError(f"{rows} profiles cannot make {k_min} clusters or more")
    scaler = RobustScaler(unit_variance=False)
    scaled = scaler.fit_transform(x)
    # A feature with no spread (the interquartile range is 0) is left as is by RobustScaler; clip outliers so
    # they cannot own a cluster of their own.
    scaled = np.clip(scaled, -10, 10)
    rng = np.random.default_rng(SEED)
    fit_rows = scaled if rows <= FIT_SAMPLE else scaled[rng.choice(rows, FIT_SAMPLE, replace=False)]
    sample = rng.choice(rows, min(rows, SILHOUETTE_SAMPLE), replace=False)
    best: tuple[float, int, KMeans] | None = None
    silhouettes: dict[int, float] = {}
    for k in range(k_min, k_max + 1):
        model = KMeans(n_clusters=k, n_init=4, random_state=SEED).fit(fit_rows)
        labels = model.predict(scaled[sample])
        score = float(silhouette_score(scaled[sample], labels)) if len(set(labels)) > 1 else -1.0
        silhouettes[k] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, k, model)
    _, k, model = best
    labels = model.predict(scaled)
    centres = np.clip(model.cluster_centers_, -10, 10)
    return Clustering(k=k, silhouettes=silhouettes, labels=labels,
                      centroids=scaler.inverse_transform(centres), sample=len(sample))


def describe(centroid: np.ndarray, features: list[str], x: np.ndarray) -> str:
    """Words for the features where the centre stands out from the population, strongest first ("high spend,
    recent, frequent"); "typical" when none does.

    Standing out takes both: being in the top (or bottom) third of people, and being a quarter of the way from the
    median to the 90th (or 10th) percentile. The first alone misleads when most people share one value: a centre
    just above zero spend is above the 70% who spent nothing, yet nobody would call it high spend."""
    phrases = []
    for column, feature in enumerate(features):
        values = x[:, column]
        centre = float(centroid[column])
        low_end, median, high_end = np.percentile(values, [10, 50, 90])
        share_below = float((values < centre).mean())
        share_above = float((values > centre).mean())
        high, low = WORDS.get(feature, (f"high {feature.replace('_', ' ')}", f"low {feature.replace('_', ' ')}"))
        if share_below >= 2 / 3 and high_end > median and centre - median >= 0.25 * (high_end - median):
            phrases.append(((centre - median) / (high_end - median), high))
        elif share_above >= 2 / 3 and median > low_end and median - centre >= 0.25 * (median - low_end):
            phrases.append(((median - centre) / (median - low_end), low))
    return ", ".join(word for _, word in sorted(phrases, reverse=True)) or "typical"
