"""Django's `shell`, which also imports the support helpers by itself."""

from django.core.management.commands import shell

from conversations.support import SHELL_IMPORTS


class Command(shell.Command):
    def get_auto_imports(self) -> list[str] | None:
        imports = super().get_auto_imports()
        if imports is None:
            return None
        return [*imports, *SHELL_IMPORTS]
