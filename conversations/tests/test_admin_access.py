"""Who gets into the admin: the "support" group views history and nothing
else; Better Auth (API) users never get in."""

from io import StringIO
from urllib.parse import quote

from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

import pytest

from better_auth.tests.factories import BetterAuthSessionFactory, signed_token
from conversations.models import Conversation, Message, ToolCall
from conversations.support import SUPPORT_GROUP_NAME, support_group_sync
from conversations.tests.factories import ToolCallFactory

MODELS = ("conversation", "message", "toolcall")


def support_user(username: str = "support") -> User:
    user = User.objects.create_user(username, password="pw-support-1", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT_GROUP_NAME))
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def group_codenames() -> set[str]:
    group = Group.objects.get(name=SUPPORT_GROUP_NAME)
    return set(group.permissions.values_list("codename", flat=True))


@pytest.mark.django_db
def test_migrate_creates_the_support_group_with_view_permissions_only() -> None:
    assert group_codenames() == {
        "view_conversation",
        "view_message",
        "view_toolcall",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_support_user_views_changelist_and_object_page(model: str) -> None:
    call = ToolCallFactory.create()
    obj = {
        "conversation": call.message.conversation,
        "message": call.message,
        "toolcall": call,
    }[model]
    client = logged_in(support_user())

    changelist = client.get(reverse(f"admin:conversations_{model}_changelist"))
    page = client.get(reverse(f"admin:conversations_{model}_change", args=[obj.pk]))

    assert (changelist.status_code, page.status_code) == (200, 200)
    assert str(obj.pk) in changelist.text
    assert 'name="_save"' not in page.text  # a view, not a form to submit


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_support_user_cannot_add_change_or_delete(model: str) -> None:
    call = ToolCallFactory.create(status=ToolCall.Status.ERROR)
    obj = {
        "conversation": call.message.conversation,
        "message": call.message,
        "toolcall": call,
    }[model]
    client = logged_in(support_user())

    add = client.post(reverse(f"admin:conversations_{model}_add"), {})
    change = client.post(
        reverse(f"admin:conversations_{model}_change", args=[obj.pk]),
        {"content": "changed", "status": "success", "owner_id": "changed"},
    )
    delete = client.post(
        reverse(f"admin:conversations_{model}_delete", args=[obj.pk]), {"post": "yes"}
    )

    assert (add.status_code, change.status_code, delete.status_code) == (403,) * 3
    assert (Conversation.objects.count(), Message.objects.count()) == (1, 1)
    assert ToolCall.objects.get().status == ToolCall.Status.ERROR


@pytest.mark.django_db
def test_support_user_cannot_manage_django_users() -> None:
    client = logged_in(support_user())

    response = client.get(reverse("admin:auth_user_changelist"))

    assert response.status_code == 403


@pytest.mark.django_db
def test_staff_user_outside_the_support_group_sees_no_conversations() -> None:
    user = User.objects.create_user("staff-only", is_staff=True)

    response = logged_in(user).get(
        reverse("admin:conversations_conversation_changelist")
    )

    assert response.status_code == 403


@pytest.mark.django_db
def test_support_user_logs_in_with_the_admin_login_form() -> None:
    support_user("login-form")
    client = Client()

    response = client.post(
        reverse("admin:login"),
        {"username": "login-form", "password": "pw-support-1", "next": "/admin/"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


# Better Auth users (the API's users)


def api_credentials(kind: str) -> dict[str, str]:
    session = BetterAuthSessionFactory.create()
    if kind == "bearer":
        return {"HTTP_AUTHORIZATION": f"Bearer {session.token}"}
    return {"HTTP_COOKIE": f"better-auth.session_token={quote(signed_token(session))}"}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["bearer", "cookie"])
@pytest.mark.parametrize(
    "url",
    ["/admin/", reverse("admin:conversations_conversation_changelist")],
    ids=["index", "conversations"],
)
def test_api_user_gets_no_admin_access(kind: str, url: str) -> None:
    response = Client().get(url, **api_credentials(kind))  # type: ignore[arg-type]

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert not User.objects.exists()


# The group is the app's to manage


@pytest.mark.django_db
def test_support_group_sync_removes_permissions_added_by_hand() -> None:
    group = Group.objects.get(name=SUPPORT_GROUP_NAME)
    group.permissions.add(Permission.objects.get(codename="delete_conversation"))

    support_group_sync()

    assert "delete_conversation" not in group_codenames()
    assert len(group_codenames()) == 3


@pytest.mark.django_db
def test_support_group_sync_recreates_a_deleted_group() -> None:
    Group.objects.filter(name=SUPPORT_GROUP_NAME).delete()

    call_command("sync_support_group", stdout=StringIO())

    assert group_codenames() == {"view_conversation", "view_message", "view_toolcall"}


@pytest.mark.django_db
def test_sync_support_group_add_makes_the_user_support_staff() -> None:
    user = User.objects.create_user("new-support")
    out = StringIO()

    call_command("sync_support_group", "--add", "new-support", stdout=out)

    user.refresh_from_db()
    assert user.is_staff is True
    assert user.is_superuser is False
    assert list(user.groups.values_list("name", flat=True)) == [SUPPORT_GROUP_NAME]
    assert "new-support is support staff." in out.getvalue()


@pytest.mark.django_db
def test_sync_support_group_unknown_username_fails_and_changes_nobody() -> None:
    known = User.objects.create_user("known")

    with pytest.raises(CommandError, match="No Django user named ghost"):
        call_command("sync_support_group", "--add", "known", "--add", "ghost")

    known.refresh_from_db()
    assert known.is_staff is False
    assert not known.groups.exists()
