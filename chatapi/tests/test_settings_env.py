"""chatapi.settings read in a fresh interpreter, from a controlled environment.

Variables are set to "" rather than removed where the test needs them
absent: `load_dotenv(override=False)` keeps any variable already in the
environment, even an empty one, so a developer's `.env` cannot interfere.
"""

import json
import re
import subprocess
from typing import Any

import pytest

from chatapi.tests.environment import ROOT, env_example_values, run_python

pytestmark = pytest.mark.slow  # a fresh interpreter per test

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
    "AGENT_STUB_STREAM_DELAY_SECONDS": settings.AGENT_STUB_STREAM_DELAY_SECONDS,
    "AGENT_CONTEXT_MESSAGES": settings.AGENT_CONTEXT_MESSAGES,
    "AGENT_CONTEXT_MAX_CHARS": settings.AGENT_CONTEXT_MAX_CHARS,
    "CHAT_MAX_MESSAGE_CHARS": settings.CHAT_MAX_MESSAGE_CHARS,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "BETTER_AUTH_SESSION_TABLE": settings.BETTER_AUTH_SESSION_TABLE,
    "BETTER_AUTH_USER_TABLE": settings.BETTER_AUTH_USER_TABLE,
    "BETTER_AUTH_COOKIE_PREFIX": settings.BETTER_AUTH_COOKIE_PREFIX,
    "AGENT_BACKEND": settings.AGENT_BACKEND,
    "LOG_LEVEL": logging.getLevelName(logging.getLogger().level),
    "FRONTEND_ORIGINS": settings.FRONTEND_ORIGINS,
    "CORS_ALLOWED_ORIGINS": settings.CORS_ALLOWED_ORIGINS,
    "RATE_LIMIT_CHAT": settings.RATE_LIMIT_CHAT,
    "RATE_LIMIT_READ": settings.RATE_LIMIT_READ,
    "RATE_LIMIT_AUTH_FAILURES": settings.RATE_LIMIT_AUTH_FAILURES,
    "RATE_LIMIT_ADMIN_LOGIN": settings.RATE_LIMIT_ADMIN_LOGIN,
    "RATE_LIMIT_SCHEMA": settings.RATE_LIMIT_SCHEMA,
    "NUM_PROXIES": settings.REST_FRAMEWORK["NUM_PROXIES"],
    "CACHE_BACKEND": settings.CACHES["default"]["BACKEND"],
    "CACHE_LOCATION": settings.CACHES["default"].get("LOCATION", ""),
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
    "DB_OPTIONS": settings.DATABASES["default"].get("OPTIONS", {}),
    "BETTER_AUTH_JWKS_URL": settings.BETTER_AUTH_JWKS_URL,
}))
"""

SECRETS = {
    "DJANGO_SECRET_KEY": "a-secret-key-for-this-test",
    "BETTER_AUTH_SECRET": "a-better-auth-secret-for-this-test",
}


def run_settings(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    return run_python(["-c", SCRIPT], **overrides)


def loaded(**overrides: str | None) -> dict[str, Any]:
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


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "BETTER_AUTH_SECRET"])
def test_settings_refuse_the_placeholder_secrets_of_env_example(name: str) -> None:
    placeholder = env_example_values()[name]

    message = improperly_configured(**{**SECRETS, name: placeholder})

    assert name in message
    assert placeholder not in message


def test_settings_env_example_copied_as_is_refuses_to_start() -> None:
    values = env_example_values()
    assert values["DJANGO_DEBUG"] == "0"

    message = improperly_configured(**values)

    assert "DJANGO_SECRET_KEY" in message


def test_settings_env_example_with_debug_on_starts_for_local_work() -> None:
    """`make run` with a .env copied from .env.example: DJANGO_DEBUG=1."""
    example = env_example_values()

    values = loaded(**{**example, "DJANGO_DEBUG": "1"})

    assert values["SECRET_KEY"] == example["DJANGO_SECRET_KEY"]
    assert values["BETTER_AUTH_SECRET"] == example["BETTER_AUTH_SECRET"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_SECRET_KEY", "Change-Me-later"),
        ("DJANGO_SECRET_KEY", "django-insecure-q8#v!s0m3th1ng-from-startproject"),
        # Better Auth's built-in default, which Better Auth refuses in production.
        ("BETTER_AUTH_SECRET", "better-auth-secret-12345678901234567890"),
    ],
)
def test_settings_refuse_publicly_known_secrets(name: str, value: str) -> None:
    message = improperly_configured(**{**SECRETS, name: value})

    assert name in message


def test_settings_debug_not_a_boolean_refuses_to_start() -> None:
    message = improperly_configured(DJANGO_DEBUG="maybe", **SECRETS)

    assert "DJANGO_DEBUG" in message
    assert "maybe" in message


def test_settings_agent_timeout_not_a_number_refuses_to_start() -> None:
    message = improperly_configured(AGENT_TIMEOUT_SECONDS="abc", **SECRETS)

    assert "AGENT_TIMEOUT_SECONDS" in message


def test_settings_stub_stream_delay_is_off_by_default_and_may_be_zero() -> None:
    assert loaded(**SECRETS)["AGENT_STUB_STREAM_DELAY_SECONDS"] == 0
    assert (
        loaded(AGENT_STUB_STREAM_DELAY_SECONDS="0", **SECRETS)[
            "AGENT_STUB_STREAM_DELAY_SECONDS"
        ]
        == 0
    )
    assert (
        loaded(AGENT_STUB_STREAM_DELAY_SECONDS="0.2", **SECRETS)[
            "AGENT_STUB_STREAM_DELAY_SECONDS"
        ]
        == 0.2
    )


def test_settings_stub_stream_delay_negative_refuses_to_start() -> None:
    message = improperly_configured(AGENT_STUB_STREAM_DELAY_SECONDS="-1", **SECRETS)

    assert "AGENT_STUB_STREAM_DELAY_SECONDS must be at least 0" in message


def test_settings_agent_timeout_zero_still_refuses_to_start() -> None:
    message = improperly_configured(AGENT_TIMEOUT_SECONDS="0", **SECRETS)

    assert "AGENT_TIMEOUT_SECONDS must be greater than 0" in message


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


def test_settings_agent_context_max_chars_defaults_to_64000() -> None:
    assert loaded(**SECRETS)["AGENT_CONTEXT_MAX_CHARS"] == 64000
    assert (
        loaded(AGENT_CONTEXT_MAX_CHARS="", **SECRETS)["AGENT_CONTEXT_MAX_CHARS"]
        == 64000
    )


def test_settings_agent_context_max_chars_read_from_the_environment() -> None:
    values = loaded(AGENT_CONTEXT_MAX_CHARS="1000", **SECRETS)

    assert values["AGENT_CONTEXT_MAX_CHARS"] == 1000
    assert "AGENT_CONTEXT_MAX_CHARS" in improperly_configured(
        AGENT_CONTEXT_MAX_CHARS="-1", **SECRETS
    )


def test_settings_without_database_url_use_sqlite() -> None:
    dotenv = ROOT / ".env"
    if dotenv.exists() and re.search(
        r"^\s*(export\s+)?DATABASE_URL\s*=", dotenv.read_text(), flags=re.MULTILINE
    ):
        pytest.skip(".env sets DATABASE_URL; the empty-value test covers this")

    values = loaded(DATABASE_URL=None, **SECRETS)

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


def test_settings_rate_limits_default_to_generous_per_minute_values() -> None:
    values = loaded(**SECRETS)

    assert values["RATE_LIMIT_CHAT"] == "60/minute"
    assert values["RATE_LIMIT_READ"] == "600/minute"
    assert values["RATE_LIMIT_AUTH_FAILURES"] == "30/minute"
    assert values["RATE_LIMIT_ADMIN_LOGIN"] == "10/hour"
    assert values["RATE_LIMIT_SCHEMA"] == "60/minute"


def test_settings_client_address_is_remote_addr_unless_proxies_are_set() -> None:
    assert loaded(**SECRETS)["NUM_PROXIES"] == 0
    assert loaded(DJANGO_NUM_PROXIES="2", **SECRETS)["NUM_PROXIES"] == 2


def test_settings_rate_limits_read_from_the_environment() -> None:
    values = loaded(
        RATE_LIMIT_CHAT="5/Second",
        RATE_LIMIT_READ="OFF",
        RATE_LIMIT_AUTH_FAILURES="7/hour",
        RATE_LIMIT_ADMIN_LOGIN="3/day",
        RATE_LIMIT_SCHEMA="off",
        **SECRETS,
    )

    assert values["RATE_LIMIT_CHAT"] == "5/second"
    assert values["RATE_LIMIT_READ"] == "off"
    assert values["RATE_LIMIT_AUTH_FAILURES"] == "7/hour"
    assert values["RATE_LIMIT_ADMIN_LOGIN"] == "3/day"
    assert values["RATE_LIMIT_SCHEMA"] == "off"


@pytest.mark.parametrize("rate", ["abc", "10", "0/minute", "10/fortnight", "-1/s"])
def test_settings_malformed_rate_limit_refuses_to_start(rate: str) -> None:
    message = improperly_configured(RATE_LIMIT_CHAT=rate, **SECRETS)

    assert "RATE_LIMIT_CHAT" in message


def test_settings_without_redis_count_in_process_memory() -> None:
    values = loaded(REDIS_URL="", **SECRETS)

    assert values["CACHE_BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_settings_redis_url_makes_redis_the_shared_cache() -> None:
    values = loaded(REDIS_URL="redis://cache.internal:6379/2", **SECRETS)

    assert values["CACHE_BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert values["CACHE_LOCATION"] == "redis://cache.internal:6379/2"


def test_settings_frontend_origins_are_the_cors_origins() -> None:
    values = loaded(
        FRONTEND_ORIGINS="https://app.example.com, https://staging.example.com",
        **SECRETS,
    )

    expected = ["https://app.example.com", "https://staging.example.com"]
    assert values["FRONTEND_ORIGINS"] == values["CORS_ALLOWED_ORIGINS"] == expected


def test_settings_frontend_origins_default_to_none_in_production() -> None:
    assert loaded(**SECRETS)["FRONTEND_ORIGINS"] == []


def test_settings_frontend_origins_default_to_next_dev_server_in_debug() -> None:
    values = loaded(DJANGO_DEBUG="1")

    assert values["FRONTEND_ORIGINS"] == ["http://localhost:3000"]


def test_settings_plain_http_defaults_leave_cookies_without_secure_flag() -> None:
    values = loaded(**SECRETS)

    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.parametrize(
    "https", ["DJANGO_SECURE_PROXY_SSL_HEADER", "DJANGO_SECURE_SSL_REDIRECT"]
)
def test_settings_https_makes_cookies_secure(https: str) -> None:
    values = loaded(**{https: "1"}, **SECRETS)

    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True


def test_settings_secure_cookies_can_be_turned_off_explicitly() -> None:
    values = loaded(
        DJANGO_SECURE_PROXY_SSL_HEADER="1", DJANGO_SECURE_COOKIES="0", **SECRETS
    )

    assert values["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    "source",
    [
        {"BETTER_AUTH_JWKS_URL": "https://app.example.com/api/auth/jwks"},
        {"BETTER_AUTH_JWKS_TABLE": "jwks"},
    ],
)
def test_settings_jwt_mode_requires_issuer_and_audience(
    source: dict[str, str],
) -> None:
    message = improperly_configured(
        **source, BETTER_AUTH_JWT_ISSUER="https://app.example.com", **SECRETS
    )

    assert "BETTER_AUTH_JWT_AUDIENCE" in message


JWT_MODE = {
    "BETTER_AUTH_JWT_ISSUER": "https://app.example.com",
    "BETTER_AUTH_JWT_AUDIENCE": "https://app.example.com",
}


@pytest.mark.parametrize(
    "url",
    ["http://app.example.com/api/auth/jwks", "file:///srv/jwks.json"],
)
def test_settings_jwks_url_must_be_https(url: str) -> None:
    message = improperly_configured(BETTER_AUTH_JWKS_URL=url, **JWT_MODE, **SECRETS)

    assert "BETTER_AUTH_JWKS_URL" in message
    assert "https://" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/api/auth/jwks",
        "http://localhost:3000/api/auth/jwks",
        "http://127.0.0.1:3000/api/auth/jwks",
        "http://[::1]:3000/api/auth/jwks",
    ],
)
def test_settings_jwks_url_over_https_or_to_loopback_is_accepted(url: str) -> None:
    values = loaded(BETTER_AUTH_JWKS_URL=url, **JWT_MODE, **SECRETS)

    assert values["BETTER_AUTH_JWKS_URL"] == url


def test_settings_jwks_url_over_http_is_accepted_with_debug_on() -> None:
    url = "http://frontend:3000/api/auth/jwks"

    values = loaded(DJANGO_DEBUG="1", BETTER_AUTH_JWKS_URL=url, **JWT_MODE)

    assert values["BETTER_AUTH_JWKS_URL"] == url


PG_URL = "postgres://app@db.example.com:5432/chat"


def test_settings_postgresql_gets_a_statement_timeout() -> None:
    values = loaded(DATABASE_URL=PG_URL, **SECRETS)

    assert values["DB_OPTIONS"]["options"] == "-c statement_timeout=15000"


def test_settings_statement_timeout_zero_sends_none() -> None:
    values = loaded(DATABASE_URL=PG_URL, DB_STATEMENT_TIMEOUT_MS="0", **SECRETS)

    assert "options" not in values["DB_OPTIONS"]


def test_settings_statement_timeout_is_not_sent_through_a_pooler() -> None:
    values = loaded(DATABASE_URL=PG_URL, DATABASE_POOLER="1", **SECRETS)

    assert "options" not in values["DB_OPTIONS"]
    assert values["DB_OPTIONS"]["prepare_threshold"] is None


def test_settings_postgresql_binds_on_the_server_and_prepares_hot_statements() -> None:
    values = loaded(DATABASE_URL=PG_URL, **SECRETS)

    assert values["DB_OPTIONS"]["server_side_binding"] is True
    assert values["DB_OPTIONS"]["prepare_threshold"] == 2


@pytest.mark.parametrize(
    ("env", "binding", "threshold"),
    [
        ({"DB_SERVER_SIDE_BINDING": "0"}, False, 2),
        ({"DB_PREPARE_THRESHOLD": "0"}, True, None),
        ({"DB_PREPARE_THRESHOLD": "7"}, True, 7),
        # Behind a pooler the connection is not ours between transactions.
        ({"DATABASE_POOLER": "1", "DB_PREPARE_THRESHOLD": "7"}, True, None),
    ],
)
def test_settings_binding_and_preparing_follow_the_environment(
    env: dict[str, str], binding: bool, threshold: int | None
) -> None:
    values = loaded(DATABASE_URL=PG_URL, **env, **SECRETS)

    assert values["DB_OPTIONS"]["server_side_binding"] is binding
    assert values["DB_OPTIONS"]["prepare_threshold"] == threshold


def test_settings_sqlite_gets_no_postgresql_options() -> None:
    values = loaded(DATABASE_URL="sqlite:///db.sqlite3", **SECRETS)

    assert "server_side_binding" not in values["DB_OPTIONS"]
    assert "prepare_threshold" not in values["DB_OPTIONS"]
