"""The README's tour, run as written (against a real gunicorn instead of make run's port 8000)."""
import json
import re
import subprocess

import pytest

from cdp.embedded import BASE_DIR


@pytest.fixture
def in_process_tasks(subprocess_env):
    """As `make run` without REDIS_URL: tasks run in the web process, so an event is processed when accepted.
    Requested before gunicorn_server, which starts with this same environment."""
    subprocess_env.pop("REDIS_URL", None)
    return subprocess_env


def tour_commands() -> str:
    readme = (BASE_DIR / "README.md").read_text()
    return re.search(r"## A tour\n\n```sh\n(.*?)```", readme, re.S).group(1)


@pytest.mark.django_db(transaction=True)
def test_the_readme_tour_works_as_written(in_process_tasks, gunicorn_server):
    script = tour_commands().replace("localhost:8000", gunicorn_server.removeprefix("http://"))

    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=BASE_DIR, env=in_process_tasks,
                         capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    decoder, text, answers = json.JSONDecoder(), run.stdout[run.stdout.index("{"):], []
    while text.strip():  # curl -s prints each answer without a newline
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].lstrip()
    (accepted_page, accepted_identify, profile, segment, accepted_view, memberships, placement, activated,
     accepted_consent, decision, accepted_order, results, clustering, model, trained, recommendations) = answers
    assert accepted_page["accepted"] == accepted_identify["accepted"] == 1
    assert {(i["type"], i["value"]) for i in profile["identifiers"]} == {
        ("anonymous_id", "a-123"), ("user_id", "u-1"), ("email", "a•••@example.com")}  # a marketer's token: masked
    assert profile["event_count"] == 2
    # The realtime segment: Ann's next view puts her in it, with the reason.
    assert segment["key"] == "browsing-now" and segment["mode"] == "realtime"
    assert accepted_view["accepted"] == 1
    [membership] = memberships
    assert membership["key"] == "browsing-now" and membership["exited_at"] is None
    assert membership["reasons"] == [{"path": "definition", "condition": '"Product Viewed" count in 1h >= 1',
                                      "value": 1, "held": True}]
    # The campaign: Ann is browsing now and allows personalisation, so she gets a variant; her order converts it.
    assert placement["key"] == "homepage_banner" and activated["status"] == "active"
    assert accepted_consent["accepted"] == accepted_order["accepted"] == 1
    assert decision["reason"] == "matched" and decision["campaign"]["key"] == "spring"
    assert decision["content"]["text"].startswith("Spring")
    rows = {row["variant"]: row for row in results["variants"]}
    assert rows[decision["variant"]]["exposed"] == rows[decision["variant"]]["conversions"] == 1
    # What is learned. This database has no demo data (make run seeds it): nobody has computed traits yet, so the
    # clustering is refused at its first feature, and one person is too few for a model, which says so. Ann's
    # viewed product is the whole catalog, so her list is the popular items.
    assert clustering == {"code": "invalid_request", "field": "features[0]",
                          "message": 'no profile has a number as computed trait "recency_days"'}
    assert model["key"] == "churn_risk" and trained["status"] == "failed"
    assert "at least 50 are needed" in trained["last_error"]
    assert recommendations["profile_id"] == profile["id"]
    assert [item["item_id"] for item in recommendations["items"]] == ["sku-1"]
