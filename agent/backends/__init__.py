"""Loading the configured agent backend (`AGENT_BACKEND`)."""

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from agent.backends.base import AgentBackend

# Short names for the backends shipped here; any dotted path works too.
BACKENDS = {
    "stub": "agent.backends.stub.StubAgent",
    "openai": "agent.backends.openai.OpenAIAgent",
}

_instances: dict[str, AgentBackend] = {}
_lock = threading.Lock()


def backend_path(name: str) -> str:
    """The dotted path of backend `name` (a short name or a dotted path)."""
    return BACKENDS.get(name, name)


def get_backend() -> AgentBackend:
    """The process-wide instance of the backend AGENT_BACKEND names."""
    name = settings.AGENT_BACKEND
    backend = _instances.get(name)
    if backend is None:
        with _lock:
            backend = _instances.get(name)
            if backend is None:
                backend_class = import_string(backend_path(name))
                backend = _instances[name] = backend_class()
    return backend


@receiver(setting_changed)
def _forget_backend(*, setting: str, **kwargs: Any) -> None:
    """A backend reads its settings when it is made: make a new one when
    they change (tests), closing the old one if it can be closed."""
    if setting.startswith(("AGENT_", "OPENAI_")):
        with _lock:
            backends = list(_instances.values())
            _instances.clear()
        for backend in backends:
            close = getattr(backend, "close", None)
            if close is not None:
                close()
