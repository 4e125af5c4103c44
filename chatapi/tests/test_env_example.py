import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = re.compile(
    r"""(?:env_[a-z_]+|_required_secret|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)\""""
)


def _documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_lists_every_variable_the_settings_read() -> None:
    sources = (ROOT / "chatapi" / "settings.py").read_text() + (
        ROOT / "gunicorn.conf.py"
    ).read_text()
    read = set(READERS.findall(sources)) | {"DATABASE_URL"}

    assert read, "the pattern found no variable: it is out of date"
    assert read - _documented() == set()


def test_env_example_lists_every_contract_variable() -> None:
    contract = {
        "DATABASE_URL",
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
        "BETTER_AUTH_SECRET",
        "BETTER_AUTH_SESSION_TABLE",
        "BETTER_AUTH_USER_TABLE",
        "BETTER_AUTH_COOKIE_PREFIX",
        "BETTER_AUTH_REQUIRE_SIGNATURE",
        "AGENT_BACKEND",
        "AGENT_TIMEOUT_SECONDS",
        "AGENT_CONTEXT_MESSAGES",
        "CHAT_MAX_MESSAGE_CHARS",
        "DJANGO_SECURE_SSL_REDIRECT",
        "DJANGO_SECURE_PROXY_SSL_HEADER",
    }

    assert contract - _documented() == set()
