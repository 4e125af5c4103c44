"""`manage.py check --deploy` under the production environment the README
documents: no issue at all. Under the defaults (plain HTTP behind a TLS
router) it warns, which shows the check is really looking."""

import re
import secrets
import subprocess

import pytest

from chatapi.tests.environment import ROOT, run_python

pytestmark = pytest.mark.slow  # `manage.py check --deploy` in a fresh interpreter


def production_environment() -> dict[str, str]:
    """The README's `<!-- production-env -->` block; `<...>` gets a secret."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- production-env -->\n```dotenv\n(.*?)```", readme, re.S)
    assert block, "README.md lost its production-env block"
    variables = dict(
        line.split("=", 1) for line in block.group(1).splitlines() if line.strip()
    )
    return {
        name: secrets.token_urlsafe(50) if value.startswith("<") else value
        for name, value in variables.items()
    }


def check_deploy(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **variables
    )


def test_documented_production_environment_passes_check_deploy() -> None:
    result = check_deploy(production_environment())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_plain_http_defaults_are_what_check_deploy_warns_about() -> None:
    result = check_deploy(
        {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
        }
    )

    assert result.returncode != 0
    reported = set(re.findall(r"security\.W\d+", result.stderr + result.stdout))
    # HSTS, SSL redirect, and the Secure flag on session and CSRF cookies.
    assert reported == {
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    }
