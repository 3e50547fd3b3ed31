"""create_source and create_api_token (the key printed alone on the last line, and working); create_demo_users."""
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from profiles.models import ApiToken, Source

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_create_source_prints_the_write_key_last(client):
    lines = run("create_source", "crm")
    source = Source.objects.get(name="crm")
    assert lines[-1] == source.write_key
    assert len(lines) == 2
    with pytest.raises(CommandError, match="already exists"):
        run("create_source", "crm")


def test_created_source_key_is_accepted_by_collect(post_collect):
    key = run("create_source", "crm")[-1]
    response = post_collect("identify", {"userId": "u1", "messageId": "1"}, write_key=key)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_create_api_token_prints_a_working_token_last(client):
    lines = run("create_api_token", "looker", "--role", "marketer")
    key = lines[-1]
    assert key.startswith("cdp_") and " " not in key
    token = ApiToken.objects.get(name="looker")
    assert token.key_hash == ApiToken.hash_key(key) and key not in (token.key_hash, token.prefix)
    user = token.user
    assert user.username == "svc-looker" and not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["Marketer"]

    response = client.get("/api/v1/profiles/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_second_token_reuses_the_service_account_with_the_new_role():
    first = run("create_api_token", "etl", "--role", "admin")[-1]
    second = run("create_api_token", "etl", "--role", "privacy_officer")[-1]
    assert first != second
    assert get_user_model().objects.filter(username="svc-etl").count() == 1
    user = get_user_model().objects.get(username="svc-etl")
    assert list(user.groups.values_list("name", flat=True)) == ["Privacy officer"]
    assert ApiToken.objects.filter(user=user).count() == 2


def test_unknown_role_is_refused():
    with pytest.raises(CommandError):
        run("create_api_token", "x", "--role", "superuser")
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_demo_users_keep_a_password_once_set():
    from django.contrib.auth import authenticate

    call_command("create_demo_users", stdout=StringIO())
    marketer = get_user_model().objects.get(username="marketer")
    marketer.set_password("my-own-secret")
    marketer.save()

    out = StringIO()
    call_command("create_demo_users", stdout=out)

    assert authenticate(username="marketer", password="my-own-secret") is not None
    assert authenticate(username="admin", password="admin-demo") is not None
    assert "marketer  / (password kept)" in out.getvalue()
    call_command("create_demo_users", reset_passwords=True, stdout=StringIO())
    assert authenticate(username="marketer", password="marketer-demo") is not None
