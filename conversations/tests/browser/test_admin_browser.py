"""A support agent in a real browser (Debian's Chromium, headless): logs in,
finds a conversation by the owner's email, reads it in order with its tool
calls. Screenshots go to $SCREENSHOT_DIR, or the test's tmp directory.

Skipped when /usr/bin/chromium is absent, unless CHATAPI_REQUIRE_BROWSER is
set (as in CI), which makes its absence a failure.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from django.contrib.auth.models import Group, User

import pytest
from pytest_django.live_server_helper import LiveServer

from better_auth.models import BetterAuthUser
from better_auth.tests.factories import BetterAuthUserFactory
from conversations.models import Message, ToolCall
from conversations.support import SUPPORT_GROUP_NAME
from conversations.tests.factories import (
    ConversationFactory,
    MessageFactory,
    ToolCallFactory,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "support-browser-pw-1"
TRANSCRIPT = [
    ("user", "add buy milk"),
    ("assistant", "Added “buy milk” to your tasks."),
    ("user", "complete buy milk"),
    ("assistant", "I could not complete it: the task was not found."),
]


@pytest.fixture
def chromium(unavailable: Callable[..., NoReturn]) -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM}: the browser test needs Debian's "
    message += "chromium package (apt-get install chromium)."
    unavailable(message, required_by="CHATAPI_REQUIRE_BROWSER")


@pytest.fixture
def owner(transactional_db: None) -> Iterator[BetterAuthUser]:
    """The conversation's owner, with a neighbour's conversation to filter out.

    Flushes leave Better Auth's (unmanaged) tables alone: cleaned up here.
    """
    users = [
        BetterAuthUserFactory.create(email="ivy@example.com"),
        BetterAuthUserFactory.create(email="neighbour@example.com"),
    ]
    yield users[0]
    BetterAuthUser.objects.filter(pk__in=[user.pk for user in users]).delete()


def a_conversation(owner: BetterAuthUser) -> str:
    conversation = ConversationFactory.create(owner_id=owner.id)
    messages = [
        MessageFactory.create(conversation=conversation, role=role, content=content)
        for role, content in TRANSCRIPT
    ]
    ToolCallFactory.create(
        message=messages[1],
        tool_name="add_task",
        parameters={"title": "buy milk"},
        result={"task_id": "42", "title": "buy milk", "completed": False},
        status=ToolCall.Status.SUCCESS,
    )
    ToolCallFactory.create(
        message=messages[3],
        tool_name="complete_task",
        parameters={"task_id": "41"},
        result={"error": "task not found"},
        status=ToolCall.Status.ERROR,
    )
    return str(conversation.id)


def test_support_user_finds_and_reads_a_conversation_in_chromium(
    chromium: Path,
    live_server: LiveServer,
    owner: BetterAuthUser,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Arrange everything in the database before Playwright's event loop runs
    # in this thread (Django refuses ORM calls next to a running loop).
    conversation_id = a_conversation(owner)
    neighbour = BetterAuthUser.objects.get(email="neighbour@example.com")
    other_id = a_conversation(neighbour)
    user = User.objects.create_user("support-browser", password=PASSWORD)
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name=SUPPORT_GROUP_NAME))
    shots = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(15_000)

        page.goto(f"{live_server.url}/admin/")
        expect(page).to_have_url(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "support-browser")
        page.fill("#id_password", PASSWORD)
        page.screenshot(path=shots / "1-login.png")
        page.click("input[type=submit]")
        expect(page.locator("#site-name")).to_be_visible()
        # The admin's stylesheet was served: its header colour applies.
        header_colour = page.eval_on_selector(
            "#header", "e => getComputedStyle(e).backgroundColor"
        )
        assert header_colour not in ("", "rgba(0, 0, 0, 0)")

        page.locator("#content-main").get_by_role(
            "link", name="Conversations", exact=True
        ).last.click()
        expect(page.locator("#searchbar")).to_be_visible()
        page.fill("#searchbar", "ivy@example.com")
        page.press("#searchbar", "Enter")
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("ivy@example.com")
        expect(page.locator("#result_list")).not_to_contain_text(other_id)
        page.screenshot(path=shots / "2-search-by-email.png", full_page=True)

        rows.first.get_by_role("link", name=conversation_id).click()
        messages = page.locator(".transcript .message")
        expect(messages).to_have_count(len(TRANSCRIPT))
        roles = page.locator(".transcript .message .role").all_inner_texts()
        contents = page.locator(".transcript .message .content").all_inner_texts()
        tools = page.locator(".transcript .tool-call .tool-name").all_inner_texts()
        statuses = page.locator(".transcript .tool-call .status").all_inner_texts()
        failed_result = page.locator(".transcript .tool-call.status-error pre").last
        expect(failed_result).to_contain_text('"error": "task not found"')
        page.screenshot(path=shots / "3-conversation.png", full_page=True)
        browser.close()

    assert [role.lower() for role in roles] == [role for role, _ in TRANSCRIPT]
    assert contents == [content for _, content in TRANSCRIPT]
    assert tools == ["add_task", "complete_task"]
    assert statuses == ["Success", "Error"]
    assert Message.objects.filter(conversation_id=conversation_id).count() == 4
    for name in ("1-login.png", "2-search-by-email.png", "3-conversation.png"):
        assert (shots / name).stat().st_size > 10_000
