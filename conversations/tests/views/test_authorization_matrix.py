"""The authorization matrix (CONTRACT §3 and §4): every endpoint against every
way a request can be refused, with every credential form the API accepts.

- No, expired, unknown or badly signed credentials: 401, JSON,
  `WWW-Authenticate: Bearer`, whatever the request points at.
- Valid credentials on another user's path, another user's conversation,
  a conversation that does not exist, a malformed conversation id in the
  path: 404 with byte-identical bodies.
- Chat's `conversation_id` in the body that is not a UUID: 400 (CONTRACT §5),
  after the path check, so on another user's path it is still 404.

Every refused request leaves every row as it was and never reaches the agent.
Cases that do not apply to an endpoint (no conversation id on GET
conversations) are not generated.
"""

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from conversations.models import Conversation, Message, ToolCall
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)
from conversations.tests.paths import (
    chat_url,
    conversation_url,
    latest_url,
    list_url,
    messages_url,
)

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse as TestResponse

pytestmark = pytest.mark.django_db

RECORDING = "agent.tests.fakes.RecordingAgent"
UNKNOWN_USER = "no-such-user"
NOT_FOUND = b'{"detail":"Not found.","code":"not_found"}'
NOT_PROVIDED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
INVALID_SESSION = {
    "detail": "Invalid or expired session.",
    "code": "authentication_failed",
}
MALFORMED = {
    "detail": "Malformed Authorization header.",
    "code": "authentication_failed",
}
# Every credential form of CONTRACT §3, applied to a session.
CREDENTIALS = [
    pytest.param(lambda s: bearer(s.token), id="bearer-raw"),
    pytest.param(lambda s: bearer(signed_token(s)), id="bearer-signed"),
    pytest.param(lambda s: cookie(encoded(signed_token(s))), id="cookie"),
    pytest.param(
        lambda s: cookie(encoded(signed_token(s)), SECURE_COOKIE), id="secure-cookie"
    ),
]
# The forms that carry a signature, with the signature altered.
BAD_SIGNATURES = [
    pytest.param(lambda s: bearer(bad_signature(s)), id="bearer-signed"),
    pytest.param(lambda s: cookie(encoded(bad_signature(s))), id="cookie"),
    pytest.param(
        lambda s: cookie(encoded(bad_signature(s)), SECURE_COOKIE), id="secure-cookie"
    ),
]
ENDPOINTS = [
    "chat",
    "latest",
    "messages",
    "list",
    "get",
    "rename",
    "delete",
    "delete-all",
]
# Endpoints of the user's path alone, and of one conversation in the path.
USER_ENDPOINTS = {"latest", "list", "delete-all"}
CONVERSATION_ENDPOINTS = {"messages", "get", "rename", "delete"}


@dataclass(frozen=True)
class World:
    """Two users, each with a session and a conversation holding a user
    message, an assistant message and a tool call."""

    me: BetterAuthSession
    other: BetterAuthSession
    mine: Conversation
    theirs: Conversation


# A request's target: the path's user id and the conversation id (in the
# path for messages, in the body for chat, absent for latest).
Target = Callable[[World], tuple[str, str | None]]
Credentials = Callable[[BetterAuthSession], Headers]


def own(world: World) -> tuple[str, str | None]:
    return world.me.user_id, str(world.mine.id)


def own_path(world: World) -> tuple[str, str | None]:
    return world.me.user_id, None


def own_target(endpoint: str) -> Target:
    """The endpoint's most ordinary request: the owner's path and conversation."""
    return own_path if endpoint in USER_ENDPOINTS else own


# Requests that valid credentials must not open: 404, same bytes.
NOT_FOUND_TARGETS: dict[str, dict[str, Target]] = {
    "latest": {
        "their-path": lambda w: (w.other.user_id, None),
        "unknown-user-path": lambda w: (UNKNOWN_USER, None),
    },
    "messages": {
        "their-path-their-conversation": lambda w: (w.other.user_id, str(w.theirs.id)),
        "their-path-my-conversation": lambda w: (w.other.user_id, str(w.mine.id)),
        "my-path-their-conversation": lambda w: (w.me.user_id, str(w.theirs.id)),
        "my-path-missing-conversation": lambda w: (w.me.user_id, str(uuid.uuid4())),
        "unknown-user-path-my-conversation": lambda w: (UNKNOWN_USER, str(w.mine.id)),
        "my-path-malformed-id": lambda w: (w.me.user_id, "not-a-uuid"),
        "my-path-malformed-id-number": lambda w: (w.me.user_id, "123"),
        "my-path-malformed-id-truncated": lambda w: (w.me.user_id, str(w.mine.id)[:-1]),
        "my-path-malformed-id-extra-digit": lambda w: (
            w.me.user_id,
            f"{w.mine.id}0",
        ),
        "my-path-malformed-id-bad-hex": lambda w: (
            w.me.user_id,
            f"{str(w.mine.id)[:-1]}g",
        ),
        "my-path-malformed-id-long": lambda w: (w.me.user_id, "x" * 300),
        "my-path-malformed-id-percent": lambda w: (w.me.user_id, "%00"),
        # Matches no route: Django's handler404 answers, not the view.
        "my-path-malformed-id-slash": lambda w: (w.me.user_id, "not/a-uuid"),
        "their-path-malformed-id": lambda w: (w.other.user_id, "not-a-uuid"),
    },
    "chat": {
        "their-path-new-conversation": lambda w: (w.other.user_id, None),
        "their-path-their-conversation": lambda w: (w.other.user_id, str(w.theirs.id)),
        "their-path-my-conversation": lambda w: (w.other.user_id, str(w.mine.id)),
        "my-path-their-conversation": lambda w: (w.me.user_id, str(w.theirs.id)),
        "my-path-missing-conversation": lambda w: (w.me.user_id, str(uuid.uuid4())),
        "unknown-user-path": lambda w: (UNKNOWN_USER, None),
        # The path is checked before the body is validated (CONTRACT §2).
        "their-path-malformed-body-id": lambda w: (w.other.user_id, "not-a-uuid"),
    },
}
for _endpoint in USER_ENDPOINTS - {"latest"}:
    NOT_FOUND_TARGETS[_endpoint] = NOT_FOUND_TARGETS["latest"]
for _endpoint in CONVERSATION_ENDPOINTS - {"messages"}:
    NOT_FOUND_TARGETS[_endpoint] = NOT_FOUND_TARGETS["messages"]
NOT_FOUND_CASES = [
    pytest.param(endpoint, target, id=f"{endpoint}-{name}")
    for endpoint, targets in NOT_FOUND_TARGETS.items()
    for name, target in targets.items()
]
# Everything a refused credential could be pointed at that reaches the API
# (a slashed id matches no route), own requests included.
ALL_TARGETS: dict[str, list[Target]] = {
    "latest": [own_path, *NOT_FOUND_TARGETS["latest"].values()],
    "messages": [
        own,
        *(
            target
            for name, target in NOT_FOUND_TARGETS["messages"].items()
            if not name.endswith("-slash")
        ),
    ],
    "chat": [
        own,
        own_path,
        lambda w: (w.me.user_id, "not-a-uuid"),
        *NOT_FOUND_TARGETS["chat"].values(),
    ],
}
for _endpoint in USER_ENDPOINTS - {"latest"}:
    ALL_TARGETS[_endpoint] = ALL_TARGETS["latest"]
for _endpoint in CONVERSATION_ENDPOINTS - {"messages"}:
    ALL_TARGETS[_endpoint] = ALL_TARGETS["messages"]


@pytest.fixture(autouse=True)
def recording_agent(settings: Settings) -> Iterator[type[RecordingAgent]]:
    settings.AGENT_BACKEND = RECORDING
    RecordingAgent.reset()
    yield RecordingAgent
    RecordingAgent.reset()


def conversation_of(owner_id: str) -> Conversation:
    conversation = ConversationFactory.create(owner_id=owner_id)
    question = MessageFactory.create(conversation=conversation)
    answer = MessageFactory.create(
        conversation=conversation, role=Message.Role.ASSISTANT, reply_to=question
    )
    ToolCallFactory.create(message=answer)
    return conversation


@pytest.fixture
def world(session: BetterAuthSession) -> World:
    other = BetterAuthSessionFactory.create()
    return World(
        me=session,
        other=other,
        mine=conversation_of(session.user_id),
        theirs=conversation_of(other.user_id),
    )


def database_state() -> tuple[tuple[int, int, int], list[tuple[Any, ...]]]:
    """Row counts, and each conversation's sequence and `updated_at`."""
    counts = (
        Conversation.objects.count(),
        Message.objects.count(),
        ToolCall.objects.count(),
    )
    return counts, list(
        Conversation.objects.order_by("pk").values_list(
            "pk",
            "owner_id",
            "title",
            "title_set_by_user",
            "last_sequence",
            "updated_at",
        )
    )


def url(endpoint: str, user_id: str, conversation_id: str | None) -> str:
    if endpoint == "chat":
        return chat_url(user_id)
    if endpoint in USER_ENDPOINTS:
        assert conversation_id is None
        return list_url(user_id) if endpoint == "list" else latest_url(user_id)
    assert conversation_id is not None
    build = messages_url if endpoint == "messages" else conversation_url
    if "/" in conversation_id:
        # reverse() cannot build it: the route refuses a slash in the id.
        return build(user_id, "ID").replace("/ID", f"/{conversation_id}")
    return build(user_id, conversation_id)


def send(
    endpoint: str, world: World, target: Target, headers: Headers
) -> "TestResponse":
    user_id, conversation_id = target(world)
    client = APIClient()
    path = url(endpoint, user_id, conversation_id)
    if endpoint == "rename":
        return client.patch(path, {"title": "renamed"}, format="json", headers=headers)
    if endpoint in ("delete", "delete-all"):
        return client.delete(path, headers=headers)
    if endpoint != "chat":
        return client.get(path, headers=headers)
    body = {"message": "add buy milk"}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return client.post(path, body, format="json", headers=headers)


def assert_unauthorized(response: "TestResponse") -> dict[str, str]:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Bearer"
    body: dict[str, str] = response.json()
    assert set(body) == {"detail", "code"}
    return body


def assert_not_found(response: "TestResponse") -> None:
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "WWW-Authenticate" not in response
    assert response.content == NOT_FOUND


# The control row: each credential form opens each endpoint for its owner.


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_own_request_is_served(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
) -> None:
    response = send(endpoint, world, own_target(endpoint), credentials(world.me))

    if endpoint == "delete":
        assert response.status_code == 204
    elif endpoint == "delete-all":
        assert response.json() == {"deleted": 1}
    elif endpoint == "list":
        [listed] = response.json()["conversations"]
        assert listed["conversation_id"] == str(world.mine.id)
    else:
        assert response.status_code == 200
        assert response.json()["conversation_id"] == str(world.mine.id)
    assert len(recording_agent.calls) == (1 if endpoint == "chat" else 0)
    # The other user's conversation is untouched whatever was done.
    theirs = Conversation.objects.get(pk=world.theirs.pk)
    assert (theirs.title, theirs.last_sequence) == (world.theirs.title, 2)


# 401: the request is refused before anything about it is looked at.


@pytest.mark.parametrize(
    ("credentials", "body"),
    [
        pytest.param(lambda s: {}, NOT_PROVIDED, id="none"),
        pytest.param(lambda s: {"Authorization": "Bearer"}, MALFORMED, id="bearer"),
        pytest.param(lambda s: cookie(""), INVALID_SESSION, id="cookie"),
        pytest.param(lambda s: cookie("", SECURE_COOKIE), INVALID_SESSION, id="secure"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_missing_credentials_are_unauthorized(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
    body: dict[str, str],
) -> None:
    before = database_state()

    response = send(endpoint, world, own_target(endpoint), credentials(world.me))

    assert assert_unauthorized(response) == body
    assert database_state() == before
    assert recording_agent.calls == []


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_expired_session_is_unauthorized(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
) -> None:
    # The same user's other session is valid: only this one has expired.
    expired = BetterAuthSessionFactory.create(user=world.me.user, expired=True)
    before = database_state()

    response = send(endpoint, world, own_target(endpoint), credentials(expired))

    assert assert_unauthorized(response) == INVALID_SESSION
    assert database_state() == before
    assert recording_agent.calls == []


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_unknown_token_is_unauthorized(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
) -> None:
    unsaved = BetterAuthSessionFactory.build(user=world.me.user)
    before = database_state()

    response = send(endpoint, world, own_target(endpoint), credentials(unsaved))

    assert assert_unauthorized(response) == INVALID_SESSION
    assert database_state() == before
    assert recording_agent.calls == []


@pytest.mark.parametrize("credentials", BAD_SIGNATURES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_bad_signature_is_unauthorized(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
) -> None:
    before = database_state()

    response = send(endpoint, world, own_target(endpoint), credentials(world.me))

    assert assert_unauthorized(response) == INVALID_SESSION
    assert database_state() == before
    assert recording_agent.calls == []


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda s: {}, id="none"),
        pytest.param(
            lambda s: bearer(
                signed_token(BetterAuthSessionFactory.create(user=s.user, expired=True))
            ),
            id="expired-bearer",
        ),
        pytest.param(
            lambda s: cookie(encoded(signed_token(BetterAuthSessionFactory.build()))),
            id="unknown-cookie",
        ),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_unauthorized_answer_does_not_depend_on_target(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    credentials: Credentials,
) -> None:
    """Without valid credentials nothing about the target leaks: own, someone
    else's, missing or malformed all answer the same 401 bytes."""
    headers = credentials(world.me)
    before = database_state()

    responses = [
        send(endpoint, world, target, headers) for target in ALL_TARGETS[endpoint]
    ]

    for response in responses:
        assert_unauthorized(response)
    assert {response.content for response in responses} == {responses[0].content}
    assert database_state() == before
    assert recording_agent.calls == []


# 404: valid credentials, but not for this.


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(("endpoint", "target"), NOT_FOUND_CASES)
def test_matrix_isolation_is_not_found(
    world: World,
    recording_agent: type[RecordingAgent],
    endpoint: str,
    target: Target,
    credentials: Credentials,
) -> None:
    before = database_state()

    response = send(endpoint, world, target, credentials(world.me))

    assert_not_found(response)
    assert database_state() == before
    assert recording_agent.calls == []


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix_not_found_responses_are_identical(
    world: World, endpoint: str, credentials: Credentials
) -> None:
    """All the 404s of an endpoint are the same bytes and the same headers
    (the route-level 404 of a slashed id aside, whose headers are Django's)."""
    headers = credentials(world.me)
    responses = {
        name: send(endpoint, world, target, headers)
        for name, target in NOT_FOUND_TARGETS[endpoint].items()
    }

    assert {r.status_code for r in responses.values()} == {404}
    assert {r.content for r in responses.values()} == {NOT_FOUND}
    # X-Request-ID names each request, so it differs by design.
    from_view = [
        sorted((k, v) for k, v in r.headers.items() if k != "X-Request-ID")
        for name, r in responses.items()
        if not name.endswith("-slash")
    ]
    assert all(view_headers == from_view[0] for view_headers in from_view)


# 400: a malformed conversation id in chat's body is a validation error.


@pytest.mark.parametrize(
    "conversation_id",
    ["not-a-uuid", "123", "", "x" * 300, 123, ["a"]],
    ids=["text", "number-text", "empty", "long", "int", "list"],
)
@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_matrix_chat_malformed_body_conversation_id_is_bad_request(
    world: World,
    recording_agent: type[RecordingAgent],
    credentials: Credentials,
    conversation_id: Any,
) -> None:
    before = database_state()

    response = APIClient().post(
        chat_url(world.me.user_id),
        {"message": "add buy milk", "conversation_id": conversation_id},
        format="json",
        headers=credentials(world.me),
    )

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    assert isinstance(body["detail"], str)
    assert isinstance(body["code"], str)
    assert list(body["errors"]) == ["conversation_id"]
    assert database_state() == before
    assert recording_agent.calls == []
