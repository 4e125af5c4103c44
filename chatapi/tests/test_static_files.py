"""The admin's static files are served by the app itself (WhiteNoise) with
debug off, through the whole middleware stack, without collectstatic."""

import re
from pathlib import Path

from django.http import FileResponse
from django.test import Client

import pytest
from pytest_django import Settings

from chatapi.tests.environment import run_python

ROOT = Path(__file__).resolve().parents[2]
CSS = "/static/admin/css/base.css"


def test_admin_css_is_served_with_debug_off(client: Client, settings: Settings) -> None:
    settings.DEBUG = False

    response = client.get(CSS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert isinstance(response, FileResponse)
    assert type(response).__module__.startswith("whitenoise")
    assert b".module" in b"".join(response.streaming_content)


@pytest.mark.django_db
def test_every_stylesheet_of_the_admin_login_page_is_served(
    client: Client, settings: Settings
) -> None:
    settings.DEBUG = False
    page = client.get("/admin/login/")

    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)

    assert stylesheets
    for url in stylesheets:
        response = client.get(url)
        assert (url, response.status_code) == (url, 200)
        assert response["Content-Type"].startswith("text/css")


def test_missing_static_file_is_404_not_500(client: Client, settings: Settings) -> None:
    settings.DEBUG = False

    response = client.get("/static/admin/css/no-such-file.css")

    assert response.status_code == 404


@pytest.mark.slow  # a fresh interpreter
def test_production_settings_serve_static_with_django_debug_0(tmp_path: Path) -> None:
    """The production settings module, as `DJANGO_DEBUG=0` starts it."""
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings; from django.test import Client\n"
        f"r = Client().get({CSS!r})\n"
        "print(settings.DEBUG, r.status_code, r['Content-Type'])\n"
    )
    result = run_python(
        ["-c", script],
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="static-files-test-secret-key-" + "x" * 40,
        BETTER_AUTH_SECRET="static-files-test-better-auth-secret",
        DJANGO_ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "200", "text/css;", 'charset="utf-8"']
