"""/api/schema/: built once per process, served from memory, throttled per
client address (RATE_LIMIT_SCHEMA)."""

from collections.abc import Iterator
from typing import Any

from django.test import Client

import pytest
from drf_spectacular.generators import SchemaGenerator
from pytest_django import Settings

from chatapi.schema import openapi_schema_clear

ADDRESS = "203.0.113.7"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """One item per run of the schema generator, from an empty cache."""
    runs: list[bool] = []
    original = SchemaGenerator.get_schema

    def counted(self: SchemaGenerator, *args: Any, **kwargs: Any) -> Any:
        runs.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    openapi_schema_clear()
    yield runs
    openapi_schema_clear()


def fetch(query: str = "?format=json", address: str = ADDRESS) -> Any:
    return Client(REMOTE_ADDR=address).get(f"/api/schema/{query}")


def test_schema_is_built_once_for_every_request(builds: list[bool]) -> None:
    as_json = fetch()
    as_yaml = fetch("")
    with_lang_and_version = fetch("?format=json&lang=fr&version=9")

    assert len(builds) == 1
    assert as_json.status_code == as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi;")
    assert with_lang_and_version.json() == as_json.json()
    assert as_json.json() == SchemaGenerator().get_schema(request=None, public=True)


def test_changed_settings_build_it_again(
    builds: list[bool], settings: Settings
) -> None:
    fetch()
    settings.CHAT_MAX_MESSAGE_CHARS = 1234

    message = fetch().json()["components"]["schemas"]["ChatRequest"]

    assert message["properties"]["message"]["maxLength"] == 1234
    assert len(builds) == 2


@pytest.mark.usefixtures("advance_clock")
def test_schema_over_the_limit_is_429_per_address(settings: Settings) -> None:
    settings.RATE_LIMIT_SCHEMA = "2/hour"

    statuses = [fetch().status_code for _ in range(2)]
    refused = fetch()

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert refused.json()["code"] == "throttled"
    assert refused["Retry-After"] == "3600"
    assert fetch(address="198.51.100.9").status_code == 200
    as_yaml = fetch("")  # YAML asked for: the error is JSON all the same
    assert (as_yaml.status_code, as_yaml["Content-Type"]) == (429, "application/json")


@pytest.mark.usefixtures("advance_clock")
def test_schema_limit_off(settings: Settings) -> None:
    settings.RATE_LIMIT_SCHEMA = "off"

    assert [fetch().status_code for _ in range(5)] == [200] * 5


def test_schema_without_a_client_address_is_served() -> None:
    """A WSGI server may set no REMOTE_ADDR: such clients share one limit."""
    response = Client().get("/api/schema/?format=json", REMOTE_ADDR=None)

    assert response.status_code == 200
    assert response.json()["openapi"]
