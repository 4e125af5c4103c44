from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.utils.module_loading import import_string

from agent.backends import BACKENDS


@register()
def check_agent_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """AGENT_BACKEND names an importable class with generate_response()."""
    name = settings.AGENT_BACKEND
    try:
        backend_class = import_string(BACKENDS.get(name, name))
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
