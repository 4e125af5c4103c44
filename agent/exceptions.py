from core.exceptions import ApplicationError


class AgentError(ApplicationError):
    """The agent produced no usable reply: it raised, or its output is invalid.

    Backends should raise this (chaining the cause); any other exception from
    a backend is treated the same way.
    """

    status_code = 502
    code = "agent_error"
    default_detail = "The assistant could not answer. Please try again."


class AgentTimeoutError(AgentError):
    """The agent did not answer within AGENT_TIMEOUT_SECONDS."""

    status_code = 504
    code = "agent_timeout"
    default_detail = "The assistant took too long to answer. Please try again."
