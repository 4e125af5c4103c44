"""Loading the configured agent backend (`AGENT_BACKEND`)."""

import functools
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


def get_backend() -> AgentBackend:
    """The process-wide instance of the backend AGENT_BACKEND names."""
    return _load(settings.AGENT_BACKEND)


@functools.cache
def _load(name: str) -> AgentBackend:
    backend_class = import_string(BACKENDS.get(name, name))
    backend: AgentBackend = backend_class()
    return backend


@receiver(setting_changed)
def _forget_backend(*, setting: str, **kwargs: Any) -> None:
    if setting == "AGENT_BACKEND":
        _load.cache_clear()
