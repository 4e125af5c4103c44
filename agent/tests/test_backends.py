from collections.abc import Iterator

from django.core import checks
from django.core.checks import Error

import pytest
from pytest_django import Settings

from agent.backends import get_backend
from agent.backends.stub import StubAgent
from agent.checks import check_agent_backend
from agent.tests.backend_fakes import ConstructionRecordingAgent
from agent.tests.fakes import FailingAgent, RecordingAgent


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    ConstructionRecordingAgent.reset()
    RecordingAgent.reset()
    yield
    ConstructionRecordingAgent.reset()
    RecordingAgent.reset()


def test_get_backend_returns_the_same_instance_each_time() -> None:
    assert get_backend() is get_backend()


def test_get_backend_builds_one_instance_per_process(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.backend_fakes.ConstructionRecordingAgent"

    backends = [get_backend() for _ in range(5)]

    assert all(backend is backends[0] for backend in backends)
    assert len(ConstructionRecordingAgent.constructions) == 1


def test_get_backend_follows_changed_setting(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.fakes.RecordingAgent"
    first = get_backend()

    settings.AGENT_BACKEND = "agent.tests.fakes.FailingAgent"
    second = get_backend()

    assert isinstance(first, RecordingAgent)
    assert isinstance(second, FailingAgent)


def test_get_backend_default_is_stub() -> None:
    assert isinstance(get_backend(), StubAgent)


def test_get_backend_accepts_short_name_stub(settings: Settings) -> None:
    settings.AGENT_BACKEND = "stub"

    assert isinstance(get_backend(), StubAgent)


def test_get_backend_builds_class_without_arguments(settings: Settings) -> None:
    settings.AGENT_BACKEND = "agent.tests.backend_fakes.ConstructionRecordingAgent"

    backend = get_backend()

    assert isinstance(backend, ConstructionRecordingAgent)
    assert ConstructionRecordingAgent.constructions == [((), {})]


def test_check_agent_backend_default_is_ok() -> None:
    assert check_agent_backend() == []


def test_check_agent_backend_short_name_is_ok(settings: Settings) -> None:
    settings.AGENT_BACKEND = "stub"

    assert check_agent_backend() == []


def test_check_agent_backend_unimportable_path_is_e001(settings: Settings) -> None:
    settings.AGENT_BACKEND = "nope.Nope"

    errors = check_agent_backend()

    assert [(type(e), e.id) for e in errors] == [(Error, "agent.E001")]
    assert "nope.Nope" in errors[0].msg


@pytest.mark.parametrize(
    "path",
    [
        "json.dumps",  # not a class
        "agent.backends.base.HistoryMessage",  # a class without generate_response
    ],
)
def test_check_agent_backend_without_generate_response_is_e002(
    settings: Settings, path: str
) -> None:
    settings.AGENT_BACKEND = path

    errors = check_agent_backend()

    assert [(type(e), e.id) for e in errors] == [(Error, "agent.E002")]
    assert path in errors[0].msg


def test_check_agent_backend_runs_with_system_checks(settings: Settings) -> None:
    settings.AGENT_BACKEND = "nope.Nope"

    errors = checks.run_checks()

    assert "agent.E001" in [e.id for e in errors]
