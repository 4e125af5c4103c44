"""A fresh interpreter with a controlled environment, for the tests of
settings and start-up."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env_example_names() -> list[str]:
    """Every variable `.env.example` names, set or commented out."""
    example = (ROOT / ".env.example").read_text()
    return re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE)


def env_example_values() -> dict[str, str]:
    """The variables `.env.example` sets (not commented out), with their
    values: what a `.env` copied from it holds."""
    example = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", example, re.MULTILINE))


def run_python(
    args: list[str], **variables: str | None
) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the project root, with the production settings
    and exactly `variables` of the app's configuration.

    Every variable of `.env.example` is blanked first rather than removed:
    load_dotenv never overrides a variable that is set, even to "", so a
    developer's environment or `.env` cannot leak in. A variable given as
    None is removed instead (then `.env` may set it).
    """
    env = {**os.environ, **dict.fromkeys(env_example_names(), "")}
    env["DJANGO_SETTINGS_MODULE"] = "chatapi.settings"  # not the tests' own
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(  # noqa: S603 (this interpreter, the tests' arguments)
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
