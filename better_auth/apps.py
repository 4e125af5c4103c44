from django.apps import AppConfig


class BetterAuthConfig(AppConfig):
    """Authentication with the frontend's Better Auth: its sessions (bearer
    token or cookie) and, optionally, its JWTs."""

    name = "better_auth"
    label = "better_auth"
    verbose_name = "Better Auth"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI security schemes of the authentication
        # classes with drf-spectacular (as its extensions are found: by
        # being imported).
        from better_auth import schema  # noqa: F401
