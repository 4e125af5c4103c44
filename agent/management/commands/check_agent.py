import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import anyio
import openai

from agent.backends import BACKENDS, backend_path
from agent.backends.openai import (
    USER_ID,
    Toolbox,
    mcp_client,
    mcp_http_client,
    mcp_tools_list,
    model_client,
    settings_missing,
)

OPENAI_AGENT = BACKENDS["openai"]


class Command(BaseCommand):
    help = (
        "Check the real model's configuration (CONTRACT §10): ask the model "
        "one short question and list the tools of each MCP server in "
        "AGENT_MCP_SERVERS. Exits 1, saying what is wrong, when something is."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.problems: list[str] = []
        backend = settings.AGENT_BACKEND
        if backend_path(backend) != OPENAI_AGENT:
            self.stdout.write(
                f"Note: AGENT_BACKEND is {backend!r}; set it to {OPENAI_AGENT!r} "
                "to answer with this model."
            )
        for name in settings_missing():
            self._problem(f"{name} is not set.")
        if not self.problems:
            anyio.run(self._model_check)
        anyio.run(self._servers_check)
        if self.problems:
            raise CommandError(
                f"{len(self.problems)} problem(s): " + " ".join(self.problems)
            )
        self.stdout.write(self.style.SUCCESS("The agent's configuration works."))

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        self.stderr.write(self.style.ERROR(f"Problem: {text}"))

    async def _model_check(self) -> None:
        base_url = settings.OPENAI_BASE_URL or "OpenAI's API"
        self.stdout.write(f"Model {settings.AGENT_MODEL!r} at {base_url}:")
        started = time.monotonic()
        async with model_client(max_retries=0) as client:
            try:
                completion = await client.chat.completions.create(
                    model=settings.AGENT_MODEL,
                    messages=[{"role": "user", "content": "Answer with the word OK."}],
                )
                answer = completion.choices[0].message.content
            except openai.AuthenticationError:
                return self._problem("the API refused OPENAI_API_KEY (401).")
            except openai.NotFoundError:
                return self._problem(
                    "the API answered 404: check AGENT_MODEL and that "
                    "OPENAI_BASE_URL ends in /v1."
                )
            except openai.APIStatusError as exc:
                return self._problem(
                    f"the API answered {exc.status_code}: {exc.message}"
                )
            except openai.APITimeoutError:
                return self._problem(
                    f"the API did not answer within AGENT_TIMEOUT_SECONDS "
                    f"({settings.AGENT_TIMEOUT_SECONDS:g} s)."
                )
            except openai.APIConnectionError as exc:
                return self._problem(f"cannot reach {base_url}: {exc.__cause__ or exc}")
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                return self._problem(
                    f"the API's answer is not a chat completion: {exc!r}"
                )
        usage = completion.usage
        tokens = (
            f", {usage.prompt_tokens} + {usage.completion_tokens} tokens"
            if usage is not None
            else ", no token usage reported"
        )
        self.stdout.write(
            f"  answered {answer!r} as {completion.model!r} in "
            f"{time.monotonic() - started:.2f} s{tokens}."
        )

    async def _servers_check(self) -> None:
        servers = settings.AGENT_MCP_SERVERS
        if not servers:
            self.stdout.write(
                "No MCP servers (AGENT_MCP_SERVERS): the model gets no tools."
            )
            return
        async with mcp_http_client() as http:
            toolbox = Toolbox(user_id="")
            for server in servers:
                self.stdout.write(f"MCP server {server}:")
                try:
                    async with mcp_client(server, http) as client:
                        tools = await mcp_tools_list(client)
                except Exception as exc:
                    self._problem(f"cannot reach MCP server {server}: {exc!r}")
                    continue
                left_out = toolbox.add(client, server, tools)
                for tool in tools:
                    if tool.name in left_out:
                        self._problem(
                            f"tool {tool.name!r} of {server} is left out: "
                            f"{left_out[tool.name]}."
                        )
                        continue
                    acts_for = (
                        f" ({USER_ID}: the requesting user)"
                        if toolbox.tools[tool.name].takes_user_id
                        else ""
                    )
                    self.stdout.write(f"  {tool.name}{acts_for}")
                if not tools:
                    self.stdout.write("  (no tools)")
