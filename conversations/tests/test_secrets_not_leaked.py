"""Secrets stay secret: session tokens (raw and signed), cookie values and
the secrets in settings never reach a log record, an error email, a response
(body or headers) or a page of the admin, whether the request succeeds or
fails.

Logs are captured at DEBUG for every logger, including the ones that do not
propagate to the root (django.server); each record is read as a handler
would write it: message, exception and stack.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth.models import AbstractBaseUser
from django.core import mail
from django.db.models import Model
from django.test import Client
from django.urls import NoReverseMatch, reverse

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from agent.tests.fakes import RecordingAgent
from better_auth.models import BetterAuthSession
from better_auth.tests.factories import (
    SECURE_COOKIE,
    BetterAuthSessionFactory,
    Headers,
    bad_signature,
    bearer,
    cookie,
    encoded,
    signed_token,
)
from conversations.models import Conversation, Message
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)
from conversations.tests.paths import chat_url, latest_url, messages_url

pytestmark = pytest.mark.django_db

RECORDING = "agent.tests.fakes.RecordingAgent"
FAILING = "agent.tests.fakes.FailingAgent"
FORMATTER = logging.Formatter()

Credentials = Callable[[BetterAuthSession], Headers]


CREDENTIALS = [
    pytest.param(lambda s: bearer(s.token), id="bearer-raw"),
    pytest.param(lambda s: bearer(signed_token(s)), id="bearer-signed"),
    pytest.param(lambda s: bearer(quote(signed_token(s))), id="bearer-signed-quoted"),
    pytest.param(lambda s: cookie(encoded(signed_token(s))), id="cookie"),
    pytest.param(lambda s: cookie(signed_token(s)), id="cookie-not-encoded"),
    pytest.param(
        lambda s: cookie(encoded(signed_token(s)), SECURE_COOKIE), id="secure-cookie"
    ),
]
SIGNED_CREDENTIALS = CREDENTIALS[1:]


@dataclass(frozen=True)
class Owner:
    """A user with a session and a conversation (messages and a tool call)."""

    session: BetterAuthSession
    conversation: Conversation


@pytest.fixture
def owner() -> Owner:
    session = BetterAuthSessionFactory.create()
    conversation = ConversationFactory.create(owner_id=session.user_id)
    question = MessageFactory.create(conversation=conversation, content="add milk")
    answer = MessageFactory.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        reply_to=question,
        content="Added milk.",
    )
    ToolCallFactory.create(message=answer)
    return Owner(session, conversation)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    # A logger that does not propagate never reaches the root's handler.
    silent = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    levels = [logger.level for logger in silent]
    for logger in silent:
        logger.addHandler(caplog.handler)
        logger.setLevel(logging.DEBUG)
    yield caplog
    for logger, level in zip(silent, levels, strict=True):
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


@pytest.fixture
def admins(settings: Settings) -> None:
    """Errors are mailed (Django's mail_admins handler), as in production."""
    settings.ADMINS = [("Ops", "ops@example.com")]


@pytest.fixture(autouse=True)
def recording_agent(settings: Settings) -> Iterator[None]:
    settings.AGENT_BACKEND = RECORDING
    RecordingAgent.reset()
    yield
    RecordingAgent.reset()


def secrets_of(session: BetterAuthSession) -> dict[str, str]:
    signed = signed_token(session)
    return {
        "raw token": session.token,
        "signed token (and raw cookie value)": signed,
        "signature": signed.rpartition(".")[2],
        "URL-encoded cookie value": encoded(signed),
        "quoted signed token": quote(signed),
        "BETTER_AUTH_SECRET": django_settings.BETTER_AUTH_SECRET,
        "SECRET_KEY": django_settings.SECRET_KEY,
    }


def record_text(record: logging.LogRecord) -> str:
    """What a handler writes for the record: message, exception, stack."""
    parts = [record.getMessage()]
    if record.exc_info:
        parts.append(FORMATTER.formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def response_text(response: Any) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    cookies = response.cookies.output()
    return f"{headers}\n{cookies}\n{response.content.decode(errors='replace')}"


def leaks(
    secrets: dict[str, str],
    logs: pytest.LogCaptureFixture,
    responses: list[Any],
) -> list[tuple[str, str]]:
    """(where, which secret) for every secret found anywhere it must not be."""
    places = {
        f"log {record.name} {record.levelname}": record_text(record)
        for record in logs.records
    }
    places["formatted log output"] = logs.text
    for number, response in enumerate(responses):
        places[f"response {number}"] = response_text(response)
    for number, message in enumerate(mail.outbox):
        places[f"email {number}"] = f"{message.subject}\n{message.body}"
        for content, _ in getattr(message, "alternatives", []):
            places[f"email {number} html"] = str(content)
    return [
        (place, name)
        for place, text in places.items()
        for name, value in secrets.items()
        if value in text
    ]


def chat(session: BetterAuthSession, headers: Headers, **body: Any) -> Any:
    return APIClient(raise_request_exception=False).post(
        chat_url(session.user_id),
        {"message": "add buy milk", **body},
        format="json",
        headers=headers,
    )


def levels_of(logs: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [record.levelname for record in logs.records if record.name == name]


# The capture itself


def test_secrets_capture_finds_a_planted_secret(
    logs: pytest.LogCaptureFixture, owner: Owner
) -> None:
    """Without this, a capture that saw nothing would pass every test."""
    secrets = secrets_of(owner.session)
    planted = {
        "django.server": secrets["raw token"],
        "django.request": secrets["URL-encoded cookie value"],
        "better_auth.authentication": secrets["signed token (and raw cookie value)"],
    }
    for name, value in planted.items():
        logging.getLogger(name).debug("credential %s", value)
    try:
        raise ValueError(secrets["BETTER_AUTH_SECRET"])
    except ValueError:
        logging.getLogger("agent.runner").exception("failed")

    found = leaks(secrets, logs, [])

    assert {place for place, _ in found} >= {
        "log django.server DEBUG",
        "log django.request DEBUG",
        "log better_auth.authentication DEBUG",
        "log agent.runner ERROR",
    }
    assert {name for _, name in found} >= {
        "raw token",
        "URL-encoded cookie value",
        "signed token (and raw cookie value)",
        "BETTER_AUTH_SECRET",
    }


# Requests that succeed


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ["chat", "latest", "messages"])
def test_secrets_not_in_logs_or_response_of_successful_request(
    logs: pytest.LogCaptureFixture,
    owner: Owner,
    endpoint: str,
    credentials: Credentials,
) -> None:
    session = owner.session
    headers = credentials(session)
    conversation_id = str(owner.conversation.id)

    if endpoint == "chat":
        response = chat(session, headers, conversation_id=conversation_id)
    else:
        path = (
            latest_url(session.user_id)
            if endpoint == "latest"
            else messages_url(session.user_id, conversation_id)
        )
        response = APIClient().get(path, headers=headers)

    assert response.status_code == 200
    assert response.json()["conversation_id"] == conversation_id
    assert leaks(secrets_of(session), logs, [response]) == []


# Requests that fail to authenticate


def refused_credentials() -> list[Any]:
    """(credentials, expired session?) pairs that must all be refused."""
    return [
        *(
            pytest.param(
                lambda s: bearer(bad_signature(s)), False, id="bad-signature-bearer"
            ),
            pytest.param(
                lambda s: cookie(encoded(bad_signature(s))),
                False,
                id="bad-signature-cookie",
            ),
            pytest.param(
                lambda s: cookie(encoded(bad_signature(s)), SECURE_COOKIE),
                False,
                id="bad-signature-secure-cookie",
            ),
            pytest.param(
                lambda s: cookie(s.token), False, id="unsigned-cookie-of-real-token"
            ),
        ),
        *(
            pytest.param(param.values[0], True, id=f"expired-{param.id}")
            for param in CREDENTIALS
        ),
        *(
            pytest.param(
                lambda s: {"Authorization": f"Bearer {s.token} {s.token}"},
                False,
                id="malformed-three-parts",
            ),
            pytest.param(
                lambda s: {"Authorization": f"Bearer {signed_token(s)} extra"},
                False,
                id="malformed-signed-three-parts",
            ),
            pytest.param(
                lambda s: {"Authorization": f"Bearer {s.token}é"},
                False,
                id="malformed-non-ascii",
            ),
            pytest.param(
                lambda s: {"Authorization": f"Bearer {s.token * 40}"},
                False,
                id="malformed-too-long",
            ),
            pytest.param(
                lambda s: {"Authorization": f"Bearer {s.token}\x00"},
                False,
                id="malformed-nul",
            ),
        ),
    ]


@pytest.mark.parametrize(("credentials", "expired"), refused_credentials())
@pytest.mark.parametrize("endpoint", ["chat", "latest"])
def test_secrets_not_in_logs_or_response_of_refused_request(
    logs: pytest.LogCaptureFixture,
    owner: Owner,
    endpoint: str,
    credentials: Credentials,
    expired: bool,
) -> None:
    session = owner.session
    if expired:
        session = BetterAuthSessionFactory.create(user=session.user, expired=True)

    if endpoint == "chat":
        response = chat(session, credentials(session))
    else:
        response = APIClient().get(
            latest_url(session.user_id), headers=credentials(session)
        )

    assert response.status_code == 401
    assert levels_of(logs, "django.request") == ["WARNING"]
    assert leaks(secrets_of(session), logs, [response]) == []


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_secrets_not_in_logs_or_response_of_unknown_token(
    logs: pytest.LogCaptureFixture, credentials: Credentials
) -> None:
    unsaved = BetterAuthSessionFactory.build()

    response = chat(unsaved, credentials(unsaved))

    assert response.status_code == 401
    assert levels_of(logs, "django.request") == ["WARNING"]
    assert leaks(secrets_of(unsaved), logs, [response]) == []


# Authenticated requests that fail


@pytest.mark.parametrize("credentials", SIGNED_CREDENTIALS)
def test_secrets_not_in_logs_or_response_of_rejected_input(
    logs: pytest.LogCaptureFixture, owner: Owner, credentials: Credentials
) -> None:
    session = owner.session
    other = BetterAuthSessionFactory.create()
    headers = credentials(session)

    not_found = APIClient().get(latest_url(other.user_id), headers=headers)
    bad_request = chat(session, headers, conversation_id="not-a-uuid")

    assert (not_found.status_code, bad_request.status_code) == (404, 400)
    assert leaks(secrets_of(session), logs, [not_found, bad_request]) == []


@pytest.mark.usefixtures("admins")
@pytest.mark.parametrize("credentials", SIGNED_CREDENTIALS)
def test_secrets_not_in_logs_response_or_email_of_agent_failure(
    logs: pytest.LogCaptureFixture,
    settings: Settings,
    owner: Owner,
    credentials: Credentials,
) -> None:
    settings.AGENT_BACKEND = FAILING

    response = chat(owner.session, credentials(owner.session))

    assert response.status_code == 502
    assert response.json()["code"] == "agent_error"
    # The failure is logged with its traceback, and mailed.
    assert any(
        record.name == "agent.runner" and record.exc_info for record in logs.records
    )
    assert len(mail.outbox) == 1
    assert leaks(secrets_of(owner.session), logs, [response]) == []


@pytest.mark.usefixtures("admins")
@pytest.mark.parametrize("credentials", SIGNED_CREDENTIALS)
def test_secrets_not_in_logs_response_or_email_of_server_error(
    logs: pytest.LogCaptureFixture,
    settings: Settings,
    owner: Owner,
    credentials: Credentials,
) -> None:
    """An unexpected exception after authentication (here a misconfigured
    message limit): the traceback, the local variables and the request
    mailed to the admins hold no credential."""
    settings.CHAT_MAX_MESSAGE_CHARS = None

    response = chat(owner.session, credentials(owner.session))

    assert response.status_code == 500
    assert response.json() == {
        "detail": "Internal server error.",
        "code": "server_error",
    }
    errors = [r for r in logs.records if r.name == "django.request"]
    assert [r.levelname for r in errors] == ["ERROR"]
    assert errors[0].exc_info is not None
    assert len(mail.outbox) == 1
    assert leaks(secrets_of(owner.session), logs, [response]) == []


# The admin


@pytest.fixture
def staff_client(django_user_model: type[AbstractBaseUser]) -> Client:
    user = django_user_model.objects.create_superuser(  # type: ignore[attr-defined]
        username="support", email="support@example.com", password="unused"
    )
    client = Client()
    client.force_login(user)
    return client


def admin_pages() -> list[str]:
    """The admin's index, and the changelist and first change page of every
    registered model."""
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first: Model | None = model._default_manager.first()
        if first is not None:
            pages.append(
                reverse(
                    f"admin:{meta.app_label}_{meta.model_name}_change",
                    args=[first.pk],
                )
            )
    return pages


def test_secrets_not_in_admin_pages(
    logs: pytest.LogCaptureFixture, staff_client: Client, owner: Owner
) -> None:
    conversation = owner.conversation
    changelist = reverse("admin:conversations_conversation_changelist")
    change = reverse("admin:conversations_conversation_change", args=[conversation.pk])

    responses = [
        staff_client.get(changelist),
        staff_client.get(changelist, {"q": owner.session.user_id}),
        staff_client.get(change),
    ]
    responses += [staff_client.get(page) for page in admin_pages()]

    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert str(conversation.id) in responses[1].text
    assert "Added milk." in responses[2].text
    assert leaks(secrets_of(owner.session), logs, responses) == []


def test_secrets_better_auth_sessions_are_not_in_the_admin(
    staff_client: Client, owner: Owner
) -> None:
    session = owner.session

    changelist = staff_client.get("/admin/conversations/betterauthsession/")
    change = staff_client.get(
        f"/admin/conversations/betterauthsession/{session.pk}/change/"
    )
    index = staff_client.get(reverse("admin:index"))

    assert admin.site.is_registered(BetterAuthSession) is False
    with pytest.raises(NoReverseMatch):
        reverse("admin:conversations_betterauthsession_changelist")
    assert changelist.status_code in {302, 404}
    assert change.status_code in {302, 404}
    assert index.status_code == 200
    assert "betterauthsession" not in index.text
