"""Sign-in is refused for a while after repeated failures, per username and per client address."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.test import RequestFactory, override_settings

from anvil_forge.accounts.forms import RateLimitedAuthenticationForm
from forge.tests.factories import PASSWORD, make_user


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def _request(address: str = "10.0.0.1"):
    return RequestFactory().post("/login/", REMOTE_ADDR=address)


def _fail(username: str, address: str = "10.0.0.1", times: int = 5) -> None:
    for _ in range(times):
        assert authenticate(_request(address), username=username, password="wrong password") is None


@pytest.mark.django_db
def test_five_failures_for_a_username_block_even_the_right_password():
    user = make_user()
    _fail(user.username, times=5)

    assert authenticate(_request("10.0.0.99"), username=user.username, password=PASSWORD) is None


@pytest.mark.django_db
def test_four_failures_then_success_signs_in_and_clears_the_count():
    user = make_user()
    _fail(user.username, times=4)

    assert authenticate(_request(), username=user.username, password=PASSWORD) == user
    _fail(user.username, address="10.0.0.2", times=4)
    assert authenticate(_request("10.0.0.3"), username=user.username, password=PASSWORD) == user


@pytest.mark.django_db
def test_failures_from_one_address_block_other_usernames_from_it_but_not_elsewhere():
    victim = make_user()
    for number in range(5):
        _fail(f"guess-{number}", address="192.0.2.7", times=1)

    assert authenticate(_request("192.0.2.7"), username=victim.username, password=PASSWORD) is None
    assert authenticate(_request("192.0.2.8"), username=victim.username, password=PASSWORD) == victim


@pytest.mark.django_db
def test_block_ends_when_the_window_passes():
    user = make_user()
    with override_settings(ANVIL_LOGIN_WINDOW_SECONDS=1):
        _fail(user.username, times=5)
        assert authenticate(_request(), username=user.username, password=PASSWORD) is None
        import time

        time.sleep(1.2)
        assert authenticate(_request(), username=user.username, password=PASSWORD) == user


@pytest.mark.django_db
def test_username_count_ignores_case_and_surrounding_space():
    make_user("casey")
    _fail("CASEY", times=3)
    _fail(" casey ", address="10.0.0.5", times=2)

    assert authenticate(_request("10.0.0.6"), username="casey", password=PASSWORD) is None


@pytest.mark.django_db
def test_sign_in_form_says_why_when_limited():
    user = make_user()
    _fail(user.username, times=5)

    form = RateLimitedAuthenticationForm(_request(), data={"username": user.username, "password": PASSWORD})

    assert not form.is_valid()
    assert "Too many failed sign-ins" in form.non_field_errors()[0]


@pytest.mark.django_db
def test_the_sign_in_page_uses_the_rate_limited_backend(client):
    from django.urls import reverse

    user = make_user()
    url = reverse("web:login")
    for _ in range(5):
        client.post(url, {"username": user.username, "password": "wrong"}, REMOTE_ADDR="203.0.113.9")

    client.post(url, {"username": user.username, "password": PASSWORD}, REMOTE_ADDR="203.0.113.10")

    assert "_auth_user_id" not in client.session
