"""`manage.py check_agent` and the system checks of the real model's
settings (CONTRACT §10), against the scripted model and the todo MCP server."""

from io import StringIO

from django.core.checks import run_checks
from django.core.management import CommandError, call_command

import pytest
from pytest_django import Settings

from agent.tests.scripted_model import Error, ScriptedModel, Text
from agent.tests.todo_mcp import TodoMCP


def check_agent() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("check_agent", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def check_agent_fails() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("check_agent", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue() + str(raised.value)


def test_a_working_configuration_is_reported_with_the_model_and_its_tools(
    real_model: ScriptedModel, todo_mcp: TodoMCP
) -> None:
    real_model.script(Text("OK", model="scripted-model-2026", usage=(11, 1)))

    out, err = check_agent()

    assert err == ""
    assert "answered 'OK' as 'scripted-model-2026'" in out
    assert "11 + 1 tokens" in out
    assert f"MCP server {todo_mcp.url}:" in out
    assert "  add_task (user_id: the requesting user)" in out
    assert "  server_time\n" in out
    assert "The agent's configuration works." in out
    # One short question, no tools.
    [request] = real_model.requests
    assert "tools" not in request


def test_a_refused_key_is_named(real_model: ScriptedModel) -> None:
    real_model.script(Error(401))

    _, err = check_agent_fails()

    assert "the API refused OPENAI_API_KEY (401)" in err


def test_an_unknown_model_or_base_url_is_named(real_model: ScriptedModel) -> None:
    real_model.script(Error(404))

    _, err = check_agent_fails()

    assert "check AGENT_MODEL and that OPENAI_BASE_URL ends in /v1" in err


def test_an_unreachable_model_api_and_mcp_server_are_named(
    real_model: ScriptedModel, settings: Settings, unreachable_url: str
) -> None:
    settings.OPENAI_BASE_URL = f"{unreachable_url}/v1"
    settings.AGENT_MCP_SERVERS = [f"{unreachable_url}/mcp"]

    _, err = check_agent_fails()

    assert f"cannot reach {unreachable_url}/v1" in err
    assert f"cannot reach MCP server {unreachable_url}/mcp" in err
    assert "2 problem(s)" in err


def test_missing_settings_are_named_without_calling_the_model(
    real_model: ScriptedModel, settings: Settings
) -> None:
    settings.OPENAI_API_KEY = ""
    settings.AGENT_MODEL = ""

    _, err = check_agent_fails()

    assert "OPENAI_API_KEY is not set" in err
    assert "AGENT_MODEL is not set" in err
    assert real_model.requests == []


def test_the_stub_in_use_is_noted(
    real_model: ScriptedModel, settings: Settings
) -> None:
    settings.AGENT_BACKEND = "agent.backends.stub.StubAgent"
    settings.AGENT_MCP_SERVERS = []
    real_model.script(Text("OK"))

    out, _ = check_agent()

    assert "Note: AGENT_BACKEND is 'agent.backends.stub.StubAgent'" in out
    assert "No MCP servers" in out


def test_system_checks_refuse_the_real_model_without_its_settings(
    settings: Settings,
) -> None:
    settings.AGENT_BACKEND = "openai"
    settings.OPENAI_API_KEY = ""
    settings.AGENT_MODEL = ""
    settings.AGENT_MCP_SERVERS = ["http://127.0.0.1:8001/mcp", "127.0.0.1:8001/mcp"]

    errors = {message.id: message.msg for message in run_checks()}

    assert errors.get("agent.E003") in {
        "OPENAI_API_KEY must be set for the OpenAI-compatible agent.",
        "AGENT_MODEL must be set for the OpenAI-compatible agent.",
    }
    assert sum(message.id == "agent.E003" for message in run_checks()) == 2
    assert errors["agent.E004"] == (
        "AGENT_MCP_SERVERS: '127.0.0.1:8001/mcp' is not an http:// or https:// URL."
    )


def test_system_checks_pass_the_configured_real_model(
    real_model: ScriptedModel,
) -> None:
    assert not [m for m in run_checks() if (m.id or "").startswith("agent.")]


def test_the_backend_refuses_to_start_without_its_settings(settings: Settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from agent.backends.openai import OpenAIAgent

    settings.OPENAI_API_KEY = ""
    settings.AGENT_MODEL = "m"
    with pytest.raises(ImproperlyConfigured, match="OPENAI_API_KEY must be set"):
        OpenAIAgent()


def test_tools_another_server_already_offers_are_named(
    real_model: ScriptedModel, todo_mcp: TodoMCP, settings: Settings
) -> None:
    settings.AGENT_MCP_SERVERS = [todo_mcp.url, todo_mcp.url]
    real_model.script(Text("OK"))

    _, err = check_agent_fails()

    assert (
        f"tool 'add_task' of {todo_mcp.url} is left out: {todo_mcp.url} offers it too."
    ) in err
    assert "7 problem(s)" in err
