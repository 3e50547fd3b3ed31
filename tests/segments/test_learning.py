"""What segments learn from profiles, checked against planted structure: data made so that the right answer is
known (three groups of spenders, a behaviour that decides who orders, a taste per person), sent through the
collection API and the pipeline like real traffic."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import ConsentSource
from consent.services.ledger import ConsentChoice, consent_record
from profiles.models import Identifier, Profile
from profiles.services.enrichment import profiles_computed_set, profiles_enrich
from segments import prediction
from segments.models import ClusteringRun, Item, PredictiveModel, Recommendations, SegmentMembership
from segments.selectors import recommendations_for, segment_preview
from segments.services import clustering, recommendations
from segments.services.prediction import model_create, model_train

pytestmark = pytest.mark.django_db


def iso(days: float) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


def pid(user: str) -> int:
    return Identifier.objects.get(type="user_id", value=user).profile_id


@pytest.fixture
def send(post_collect, drain):
    """Posts messages through /v1/batch in batches of 100, then runs the pipeline."""
    def send(messages: list[dict]) -> None:
        for n, start in enumerate(range(0, len(messages), 100)):
            batch = messages[start:start + 100]
            response = post_collect("batch", {"batch": batch})
            assert response.status_code == 200, response.content
        drain()
    return send


def track(user: str, event: str, days: float, n: int, **properties) -> dict:
    return {"type": "track", "userId": user, "event": event, "properties": properties, "timestamp": iso(days),
            "messageId": f"{user}-{event}-{n}"}


# ---------------------------------------------------------------------------------------------------- clustering


def test_clustering_recovers_planted_groups_and_makes_them_segments(send, client, admin_user):
    # Three groups of 40 with far-apart spend and order counts, and some spread inside each.
    rng = random.Random(7)
    groups = {"whale": (5000, 40), "regular": (400, 8), "window": (10, 0)}
    send([{"type": "identify", "userId": f"{g}{i}", "messageId": f"id-{g}{i}", "timestamp": iso(1)}
          for g in groups for i in range(40)])
    for key, values in (("monetary_value", 0), ("frequency_orders", 1)):
        profiles_computed_set(key=key, values={pid(f"{g}{i}"): groups[g][values] * rng.uniform(0.8, 1.2)
                                               for g in groups for i in range(40)})
    client.force_login(admin_user)

    response = client.post("/api/v1/segments/clustering/",
                           {"features": ["monetary_value", "frequency_orders"], "k_min": 2, "k_max": 6},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    clustering.clustering_run(run_id=run_id)
    assert clustering.clustering_run(run_id=run_id) is None  # a second run of the task changes nothing

    body = client.get(f"/api/v1/segments/clustering/{run_id}/").json()
    assert body["status"] == "ready" and body["k"] == 3
    assert set(body["silhouette"]) == {"2", "3", "4", "5", "6"}
    assert max(body["silhouette"], key=body["silhouette"].get) == "3"
    assert body["profiles"] == 120
    by_size = sorted(body["clusters"], key=lambda c: c["centroid"]["monetary_value"])
    assert [c["size"] for c in by_size] == [40, 40, 40]
    assert 4000 < by_size[2]["centroid"]["monetary_value"] < 6000
    assert "high spend" in by_size[2]["description"] and "frequent" in by_size[2]["description"]
    assert "low spend" in by_size[0]["description"]
    # Each cluster is a static segment whose members are exactly one planted group.
    for cluster, group in zip(by_size, ["window", "regular", "whale"]):
        members = set(SegmentMembership.objects.filter(segment_id=cluster["segment_id"], exited_at__isnull=True)
                      .values_list("profile_id", flat=True))
        assert members == {pid(f"{group}{i}") for i in range(40)}
    # ... usable in rules like any segment.
    preview = segment_preview(definition={"segment": by_size[2]["segment_key"]})
    assert preview.count == 40


def test_a_clustering_request_names_its_bad_place(client, admin_user, source):
    client.force_login(admin_user)
    response = client.post("/api/v1/segments/clustering/", {"features": ["no_such_trait"], "k_min": 2, "k_max": 4},
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"code": "invalid_request", "field": "features[0]",
                                "message": 'no profile has a number as computed trait "no_such_trait"'}
    response = client.post("/api/v1/segments/clustering/", {"features": ["events.Signed Up"], "k_min": 5,
                                                             "k_max": 3}, content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "k_min"
    assert not ClusteringRun.objects.exists()


# ------------------------------------------------------------------------------------------------ predictions


def _shoppers(send, *, people: int = 120) -> None:
    """Everyone visits every 3 days from the day they joined (between 30 and 150 days ago), so recency and
    tenure say nothing; half of them also put things in their cart every week and order about every 10 days.
    Whether someone orders is planted in the cart behaviour."""
    rng = random.Random(11)
    messages = []
    for i in range(people):
        user, buyer, joined = f"u{i}", i % 2 == 0, rng.randrange(30, 150)
        for day in range(joined, 0, -3):
            messages.append(track(user, "Page Viewed", day - rng.random(), day))
        if buyer:
            for day in range(joined, 0, -7):
                messages.append(track(user, "Product Added", day - rng.random(), day))
            for day in range(joined - rng.randrange(10), 0, -10):
                messages.append(track(user, "Order Completed", day - rng.random(), day, revenue=50))
    send(messages)


def test_a_planted_signal_gives_a_high_auc_and_scores_become_a_computed_trait(send, client, admin_user):
    _shoppers(send)
    client.force_login(admin_user)
    response = client.post("/api/v1/models/", {"key": "churn_risk", "target_event": "Order Completed",
                                               "horizon_days": 14, "negate": True}, content_type="application/json")
    assert response.status_code == 202, response.content
    model = PredictiveModel.objects.get(key="churn_risk")
    version = model_train(model_id=model.pk)

    body = client.get("/api/v1/models/churn_risk/").json()
    assert body["status"] == "ready"
    [v] = body["versions"]
    assert v["version"] == version.version == 1 and v["promoted"]
    assert v["auc"] > 0.95 and v["baseline_auc"] < 0.7, v
    assert 0.4 < v["base_rate"] < 0.6
    assert v["brier"] < v["base_rate"] * (1 - v["base_rate"]) / 2  # half the Brier of always saying the base rate
    assert {f["feature"] for f in v["feature_importances"]} == set(prediction.FEATURES)
    assert v["auc"] - v["baseline_auc"] > 0.25
    assert sum(v["score_histogram"]) == v["scored"] == 120
    scores = dict(Profile.objects.filter(computed__has_key="churn_risk").values_list("id", "computed__churn_risk"))
    buyers = [scores[pid(f"u{i}")] for i in range(0, 120, 2)]
    browsers = [scores[pid(f"u{i}")] for i in range(1, 120, 2)]
    assert max(buyers) < 0.5 < min(browsers)
    # A rule reads the score like any computed trait.
    assert segment_preview(definition={"computed": "churn_risk", "op": "gt", "value": 0.5}).count == 60


def test_scores_follow_the_features_between_trainings(send):
    from segments.services.prediction import models_score

    _shoppers(send, people=80)
    model = model_create(key="churn_risk", target_event="Order Completed", horizon_days=14, negate=True)
    model_train(model_id=model.pk)
    buyer = pid("u0")
    before = Profile.objects.get(pk=buyer).computed["churn_risk"]

    # Sixty days later, without a visit: the buyer has lapsed, and the same model says so.
    assert models_score(now=timezone.now() + timedelta(days=60)) == {"churn_risk": 80}

    assert Profile.objects.get(pk=buyer).computed["churn_risk"] > before + 0.3
    assert model.versions.count() == 1


def test_a_version_worse_on_the_holdout_does_not_replace_the_scores(send, monkeypatch):
    _shoppers(send, people=80)
    model = model_create(key="propensity", target_event="Order Completed", horizon_days=14,
                         algorithm="logistic_regression")
    first = model_train(model_id=model.pk)
    before = dict(Profile.objects.filter(computed__has_key="propensity").values_list("id", "computed"))
    # The next training can only fit a model that always says the base rate.
    from sklearn.dummy import DummyClassifier
    monkeypatch.setattr(prediction, "_candidates",
                        lambda: {"logistic_regression": DummyClassifier(strategy="prior")})

    second = model_train(model_id=model.pk)

    assert second.version == 2 and not second.promoted
    assert second.auc == 0.5 and second.incumbent_auc > 0.95 and first.promoted
    after = dict(Profile.objects.filter(computed__has_key="propensity").values_list("id", "computed"))
    assert {k: v["propensity"] for k, v in after.items()} == {k: v["propensity"] for k, v in before.items()}


def test_a_model_without_both_outcomes_fails_with_the_reason(send):
    send([track(f"v{i}", "Page Viewed", day, day) for i in range(60) for day in (40, 20, 5)])
    model = model_create(key="never", target_event="Order Completed", horizon_days=14)
    assert model_train(model_id=model.pk) is None
    model.refresh_from_db()
    assert model.status == "failed" and "same outcome" in model.last_error
    assert not Profile.objects.filter(computed__has_key="never").exists()


def test_a_model_key_may_not_be_a_computed_trait_of_the_product(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/api/v1/models/", {"key": "recency_days", "target_event": "Order Completed"},
                           content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "key"
    assert not PredictiveModel.objects.exists()


# --------------------------------------------------------------------------------------------------------- RFM


def test_rfm_scores_and_groups_are_computed_traits_usable_in_rules(send):
    messages = []
    # Twenty customers: c0 orders often and lately, c19 once long ago, the others in between.
    for i in range(20):
        orders = 20 - i
        for n in range(orders):
            messages.append(track(f"c{i}", "Order Completed", 1 + i * 10 + n, n, revenue=10 * orders))
    messages.append(track("browser", "Page Viewed", 1, 0))
    send(messages)

    profiles_enrich()

    best, worst = Profile.objects.get(pk=pid("c0")).computed, Profile.objects.get(pk=pid("c19")).computed
    assert (best["rfm_recency"], best["rfm_frequency"], best["rfm_monetary"]) == (5, 5, 5)
    assert best["rfm_score"] == "555" and best["rfm_group"] == "Champions"
    assert (worst["rfm_recency"], worst["rfm_frequency"]) == (1, 1) and worst["rfm_group"] == "Lost"
    assert "rfm_group" not in Profile.objects.get(pk=pid("browser")).computed
    assert segment_preview(definition={"computed": "rfm_group", "op": "eq", "value": "Champions"}).count == \
        Profile.objects.filter(computed__rfm_group="Champions").count() >= 1


def test_rfm_ties_share_their_lowest_place(send):
    # Most customers ordered once, as in most shops: they all have frequency 1, and the most recent of them is
    # a new customer, not a champion.
    messages = [track(f"once{i}", "Order Completed", 1 + 10 * i, 0, revenue=20) for i in range(8)]
    messages += [track(f"often{i}", "Order Completed", 2 + 5 * n + i, n, revenue=20) for i in range(2)
                 for n in range(6)]
    send(messages)

    profiles_enrich()

    once = [Profile.objects.get(pk=pid(f"once{i}")).computed for i in range(8)]
    assert {c["rfm_frequency"] for c in once} == {1}
    assert {c["rfm_monetary"] for c in once} == {1}
    assert once[0]["rfm_recency"] == 5 and once[0]["rfm_group"] == "New customers"
    assert once[7]["rfm_recency"] == 1 and once[7]["rfm_group"] == "Lost"
    assert {Profile.objects.get(pk=pid(f"often{i}")).computed["rfm_frequency"] for i in range(2)} == {5}


def test_enrichment_keeps_a_models_scores(send):
    send([track("a", "Order Completed", 2, 0, revenue=5)])
    profiles_computed_set(key="churn_risk", values={pid("a"): 0.25})
    profiles_enrich()
    assert Profile.objects.get(pk=pid("a")).computed["churn_risk"] == 0.25


# ----------------------------------------------------------------------------------------------- recommendations

CATEGORIES = ["Shoes", "Hats", "Bags", "Socks"]


@pytest.fixture
def tastes(send, client, admin_user):
    """A catalog of 4 categories x 10 items; 40 people who each like one category (they view its items, add and
    buy some), plus a little noise, all in the US (personalisation allowed by default)."""
    client.force_login(admin_user)
    items = [{"item_id": f"{c.lower()}-{n}", "name": f"{c} model {n}", "category": f"Apparel > {c}",
              "brand": f"brand{n % 3}", "price": 10 + n} for c in CATEGORIES for n in range(10)]
    assert client.post("/api/v1/items/bulk/", {"items": items}, content_type="application/json").json() == \
        {"created": 40, "updated": 0}
    rng = random.Random(3)
    messages = []
    for person in range(40):
        user, taste = f"p{person}", CATEGORIES[person % 4].lower()
        messages.append({"type": "identify", "userId": user, "traits": {"country": "US"},
                         "messageId": f"id-{user}", "timestamp": iso(30)})
        liked = rng.sample(range(10), 6)
        for n, item in enumerate(liked):
            messages.append(track(user, "Product Viewed", 20 - n, n, product_id=f"{taste}-{item}"))
        messages.append(track(user, "Order Completed", 2, 99, revenue=10,
                              products=[{"product_id": f"{taste}-{liked[0]}"}, {"product_id": f"{taste}-{liked[1]}"}]))
        # A look at another shelf, before the taste shows (the evaluation holds out the latest new item).
        messages.append(track(user, "Product Viewed", 25, 100, product_id=f"{rng.choice(CATEGORIES).lower()}-0"))
    send(messages)
    return recommendations.recommendations_refresh()


def test_a_planted_taste_gives_the_right_recommendations(tastes, client):
    assert tastes.status == "ready" and tastes.people == 40 and tastes.items == 40
    body = client.get(f"/api/v1/profiles/{pid('p1')}/recommendations/?k=4").json()
    assert body["basis"] == "personal"
    assert len(body["items"]) == 4
    assert all(item["category"] == "Apparel > Hats" for item in body["items"]), body
    bought = set(Recommendations.objects.get(profile_id=pid("p1")).bought)
    assert not bought & set(Item.objects.filter(item_id__in=[i["item_id"] for i in body["items"]])
                            .values_list("pk", flat=True))
    everything = client.get(f"/api/v1/profiles/{pid('p1')}/recommendations/?k=50&include_bought=true").json()
    assert bought <= set(Item.objects.filter(item_id__in=[i["item_id"] for i in everything["items"]])
                         .values_list("pk", flat=True))
    similar = client.get("/api/v1/items/bags-3/similar/?k=5").json()
    assert [i["category"] for i in similar["similar"]] == ["Apparel > Bags"] * 5
    assert "bags-3" not in {i["item_id"] for i in similar["similar"]}
    # The offline evaluation: the hybrid beats popularity on the held-out items.
    table = tastes.evaluation
    assert set(table) == {"hybrid", "collaborative", "content", "popularity"}
    assert table["hybrid"]["hit_rate_at_10"] > table["popularity"]["hit_rate_at_10"] + 0.2, table


def test_no_personal_recommendations_without_consent_to_personalisation(tastes, client):
    person = pid("p2")
    consent_record(choices=[ConsentChoice(profile_id=person, purpose="personalization", granted=False,
                                          source=ConsentSource.API, recorded_at=timezone.now())])
    body = client.get(f"/api/v1/profiles/{person}/recommendations/?k=10").json()
    popular = recommendations_for(profile_id=None, k=10)
    assert body["basis"] == "popular" == popular.basis
    assert [i["item_id"] for i in body["items"]] == [i.item_id for i in popular.items]
    assert all(i["score"] is None for i in body["items"])


def test_a_read_is_one_query_after_the_purpose_and_nobody_with_history_gets_popular_items(tastes, client, django_assert_num_queries):
    newcomer = Profile.objects.create(created_at=timezone.now(), updated_at=timezone.now(),
                                      traits={"country": "US"}, regime="ccpa")
    person = pid("p3")
    with django_assert_num_queries(2):  # the purpose's defaults, then the list
        found = recommendations_for(profile_id=person, k=10)
    assert found.basis == "personal"
    assert recommendations_for(profile_id=newcomer.pk, k=10).basis == "popular"
    assert client.get(f"/api/v1/profiles/{pid('p3')}/recommendations/?k=0").status_code == 400


def test_recommendations_leave_with_an_erased_person(tastes):
    from consent.registry import handlers
    [handler] = [h for h in handlers() if h.name == "segment_recommendations"]
    person = pid("p4")
    exported = handler.export([person])
    assert exported["recommendations"][0]["items"]
    assert handler.erase([person], 100) == {"recommendations": 1}
    assert handler.erase([person], 100) == {"recommendations": 0}
    assert not Recommendations.objects.filter(profile_id=person).exists()


def test_bad_items_are_refused_whole_with_their_place(client, admin_user, source):
    client.force_login(admin_user)
    response = client.post("/api/v1/items/bulk/", {"items": [{"item_id": "ok-1"}, {"item_id": "x", "price": -1}]},
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == "items.1.price"
    assert not Item.objects.exists()


def test_a_refresh_without_interactions_keeps_the_catalogs_similar_items(client, admin_user, source):
    client.force_login(admin_user)
    client.post("/api/v1/items/bulk/", {"items": [
        {"item_id": "shoes/red-42", "name": "Red runner", "category": "Shoes > Running"},
        {"item_id": "shoes/blue-42", "name": "Blue runner", "category": "Shoes > Running"},
        {"item_id": "hat-1", "name": "Wool hat", "category": "Hats"}]}, content_type="application/json")

    run = recommendations.recommendations_refresh()

    assert run.status == "ready" and run.interactions == 0 and run.popular == []
    # A product id with a slash is an address like any other, and its neighbours come from the catalog's words.
    assert client.get("/api/v1/items/shoes/red-42/").json()["name"] == "Red runner"
    similar = client.get("/api/v1/items/shoes/red-42/similar/?k=1").json()
    assert [i["item_id"] for i in similar["similar"]] == ["shoes/blue-42"]
    assert client.get("/api/v1/items/nothing-like-it/similar/").status_code == 404


def test_deleting_a_model_in_the_admin_takes_its_scores(send, client, admin_user):
    send([track("a", "Page Viewed", 1, 0)])
    model = model_create(key="propensity", target_event="Order Completed")
    profiles_computed_set(key="propensity", values={pid("a"): 0.4})
    client.force_login(admin_user)

    response = client.post(f"/admin/segments/predictivemodel/{model.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not PredictiveModel.objects.exists()
    assert "propensity" not in Profile.objects.get(pk=pid("a")).computed


def test_a_clustering_that_cannot_save_its_segments_is_failed_with_the_reason(send):
    from segments.models import Segment

    send([{"type": "identify", "userId": f"c{i}", "messageId": f"c{i}"} for i in range(12)])
    profiles_computed_set(key="monetary_value", values={pid(f"c{i}"): float(i % 3) * 100 for i in range(12)})
    run = clustering.clustering_queue(features=["monetary_value"], k_min=2, k_max=3)
    Segment.objects.create(key=f"cluster-{run.pk}-1", name="Taken", mode="static")

    with pytest.raises(Exception):
        clustering.clustering_run(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "failed" and "IntegrityError" in run.error
