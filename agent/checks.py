from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.utils.module_loading import import_string

from agent.backends import BACKENDS, backend_path


@register()
def check_agent_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """AGENT_BACKEND names an importable class with generate_response()."""
    name = settings.AGENT_BACKEND
    try:
        backend_class = import_string(backend_path(name))
    except ImportError as exc:
        return [
            Error(
                f"AGENT_BACKEND {name!r} cannot be imported: {exc}",
                hint="Set AGENT_BACKEND to a dotted path such as "
                "'agent.backends.stub.StubAgent'.",
                id="agent.E001",
            )
        ]
    if not isinstance(backend_class, type) or not callable(
        getattr(backend_class, "generate_response", None)
    ):
        return [
            Error(
                f"AGENT_BACKEND {name!r} is not a class with generate_response().",
                id="agent.E002",
            )
        ]
    return []


@register()
def check_openai_agent(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The real model's settings (CONTRACT §10), when AGENT_BACKEND is it."""
    if backend_path(settings.AGENT_BACKEND) != BACKENDS["openai"]:
        return []
    from agent.backends.openai import settings_missing

    errors: list[CheckMessage] = [
        Error(
            f"{name} must be set for the OpenAI-compatible agent.",
            hint="See .env.example; `manage.py check_agent` tries the configuration.",
            id="agent.E003",
        )
        for name in settings_missing()
    ]
    errors += [
        Error(
            f"AGENT_MCP_SERVERS: {server!r} is not an http:// or https:// URL.",
            id="agent.E004",
        )
        for server in settings.AGENT_MCP_SERVERS
        if urlsplit(server).scheme not in ("http", "https")
        or not urlsplit(server).netloc
    ]
    return errors
