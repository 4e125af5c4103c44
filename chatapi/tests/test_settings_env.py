"""chatapi.settings read in a fresh interpreter, from a controlled environment.

Variables are set to "" rather than removed where the test needs them
absent: `load_dotenv(override=False)` keeps any variable already in the
environment, even an empty one, so a developer's `.env` cannot interfere.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Variables whose empty value the settings treat as absent.
BLANKED = (
    "DJANGO_SECRET_KEY",
    "BETTER_AUTH_SECRET",
    "DJANGO_DEBUG",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_PROXY_SSL_HEADER",
    "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE",
    "BETTER_AUTH_REQUIRE_SIGNATURE",
    "AGENT_TIMEOUT_SECONDS",
    "AGENT_CONTEXT_MESSAGES",
    "CHAT_MAX_MESSAGE_CHARS",
    "DB_CONN_MAX_AGE",
    "DB_CONNECT_TIMEOUT",
    "DATABASE_POOLER",
)
PREFIXES = ("DJANGO_", "BETTER_AUTH_", "AGENT_", "CHAT_", "DATABASE_", "DB_")

SCRIPT = """
import json
import logging

import django

django.setup()

from django.conf import settings

print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "BETTER_AUTH_SECRET": settings.BETTER_AUTH_SECRET,
    "ENGINE": settings.DATABASES["default"]["ENGINE"],
    "SECURE_PROXY_SSL_HEADER": settings.SECURE_PROXY_SSL_HEADER,
    "SECURE_SSL_REDIRECT": settings.SECURE_SSL_REDIRECT,
    "AGENT_TIMEOUT_SECONDS": settings.AGENT_TIMEOUT_SECONDS,
    "AGENT_CONTEXT_MESSAGES": settings.AGENT_CONTEXT_MESSAGES,
    "CHAT_MAX_MESSAGE_CHARS": settings.CHAT_MAX_MESSAGE_CHARS,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "BETTER_AUTH_SESSION_TABLE": settings.BETTER_AUTH_SESSION_TABLE,
    "BETTER_AUTH_USER_TABLE": settings.BETTER_AUTH_USER_TABLE,
    "BETTER_AUTH_COOKIE_PREFIX": settings.BETTER_AUTH_COOKIE_PREFIX,
    "AGENT_BACKEND": settings.AGENT_BACKEND,
    "LOG_LEVEL": logging.getLevelName(logging.getLogger().level),
}))
"""

SECRETS = {
    "DJANGO_SECRET_KEY": "a-secret-key-for-this-test",
    "BETTER_AUTH_SECRET": "a-better-auth-secret-for-this-test",
}


def run_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(PREFIXES) and name != "LOG_LEVEL"
    }
    env.update(dict.fromkeys(BLANKED, ""))
    env["DJANGO_SETTINGS_MODULE"] = "chatapi.settings"
    env.update(overrides)
    return subprocess.run(  # noqa: S603 (fixed interpreter and script)
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def loaded(**overrides: str) -> dict[str, Any]:
    result = run_settings(**overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def improperly_configured(**overrides: str) -> str:
    """The ImproperlyConfigured message the settings stopped with."""
    result = run_settings(**overrides)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    prefix = "django.core.exceptions.ImproperlyConfigured: "
    assert last_line.startswith(prefix), result.stderr
    return last_line.removeprefix(prefix)


def test_settings_without_secret_key_refuse_to_start() -> None:
    message = improperly_configured()

    assert "DJANGO_SECRET_KEY" in message


def test_settings_without_better_auth_secret_refuse_to_start() -> None:
    message = improperly_configured(DJANGO_SECRET_KEY=SECRETS["DJANGO_SECRET_KEY"])

    assert "BETTER_AUTH_SECRET" in message


def test_settings_whitespace_only_secret_counts_as_missing() -> None:
    message = improperly_configured(DJANGO_SECRET_KEY="   ")

    assert "DJANGO_SECRET_KEY" in message


def test_settings_with_both_secrets_start_with_debug_off() -> None:
    values = loaded(**SECRETS)

    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == SECRETS["DJANGO_SECRET_KEY"]
    assert values["BETTER_AUTH_SECRET"] == SECRETS["BETTER_AUTH_SECRET"]


def test_settings_debug_without_secrets_start_with_dev_values() -> None:
    values = loaded(DJANGO_DEBUG="1")

    assert values["DEBUG"] is True
    assert values["SECRET_KEY"]
    assert values["BETTER_AUTH_SECRET"]


def test_settings_debug_not_a_boolean_refuses_to_start() -> None:
    message = improperly_configured(DJANGO_DEBUG="maybe", **SECRETS)

    assert "DJANGO_DEBUG" in message
    assert "maybe" in message


def test_settings_agent_timeout_not_a_number_refuses_to_start() -> None:
    message = improperly_configured(AGENT_TIMEOUT_SECONDS="abc", **SECRETS)

    assert "AGENT_TIMEOUT_SECONDS" in message


def test_settings_secure_proxy_ssl_header_on_trusts_forwarded_proto() -> None:
    values = loaded(DJANGO_SECURE_PROXY_SSL_HEADER="1", **SECRETS)

    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_settings_secure_proxy_ssl_header_is_off_by_default() -> None:
    values = loaded(**SECRETS)

    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["SECURE_SSL_REDIRECT"] is False


def test_settings_empty_values_give_contract_defaults() -> None:
    values = loaded(**SECRETS)

    assert values["AGENT_TIMEOUT_SECONDS"] == 30.0
    assert values["AGENT_CONTEXT_MESSAGES"] == 20
    assert values["CHAT_MAX_MESSAGE_CHARS"] == 32000


def test_settings_without_database_url_use_sqlite() -> None:
    dotenv = ROOT / ".env"
    if dotenv.exists() and re.search(
        r"^\s*(export\s+)?DATABASE_URL\s*=", dotenv.read_text(), flags=re.MULTILINE
    ):
        pytest.skip(".env sets DATABASE_URL; the empty-value test covers this")

    values = loaded(**SECRETS)

    assert values["ENGINE"] == "django.db.backends.sqlite3"


def test_settings_empty_database_url_uses_sqlite() -> None:
    values = loaded(DATABASE_URL="", **SECRETS)

    assert values["ENGINE"] == "django.db.backends.sqlite3"


@pytest.mark.parametrize(
    ("name", "setting", "default"),
    [
        ("DJANGO_ALLOWED_HOSTS", "ALLOWED_HOSTS", ["localhost", "127.0.0.1"]),
        ("BETTER_AUTH_SESSION_TABLE", "BETTER_AUTH_SESSION_TABLE", "session"),
        ("BETTER_AUTH_USER_TABLE", "BETTER_AUTH_USER_TABLE", "user"),
        ("BETTER_AUTH_COOKIE_PREFIX", "BETTER_AUTH_COOKIE_PREFIX", "better-auth"),
        ("AGENT_BACKEND", "AGENT_BACKEND", "agent.backends.stub.StubAgent"),
        ("LOG_LEVEL", "LOG_LEVEL", "INFO"),
    ],
)
def test_settings_empty_string_variable_gives_its_default(
    name: str, setting: str, default: Any
) -> None:
    values = loaded(**{name: ""}, **SECRETS)

    assert values[setting] == default
