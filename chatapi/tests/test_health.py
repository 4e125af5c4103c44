"""/healthz and /readyz: load-balancer probes."""

from collections.abc import Iterator

from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from chatapi.health import ReadyView


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    ReadyView.migrated = False
    yield
    ReadyView.migrated = False


def test_healthz_answers_without_credentials_or_database() -> None:
    # No django_db mark: a query here would fail the test.
    response = APIClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_answers_and_migrations_applied(
    fresh_probe: None,
) -> None:
    response = APIClient().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.django_db
def test_readyz_after_first_success_costs_one_query(fresh_probe: None) -> None:
    client = APIClient()
    client.get("/readyz")

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/readyz")

    assert response.status_code == 200
    assert [q["sql"] for q in queries] == ["SELECT 1"]


@pytest.mark.django_db
def test_readyz_reports_pending_migrations(fresh_probe: None) -> None:
    MigrationRecorder.Migration.objects.filter(app="conversations").delete()

    response = APIClient().get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "detail": "Migrations are not applied.",
        "code": "migrations_pending",
    }


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_readyz_reports_an_unreachable_database(fresh_probe: None) -> None:
    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "9"  # nothing listens there
    try:
        response = APIClient().get("/readyz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_refuse_writes_with_json_405(path: str) -> None:
    response = APIClient().post(path)

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_probes_are_exempt_from_the_https_redirect(settings: Settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    assert APIClient().get("/healthz").status_code == 200
    assert APIClient().get("/api/v1/users/x/conversations").status_code == 301
