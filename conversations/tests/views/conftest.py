import pytest
from rest_framework.test import APIClient

from conversations.models import BetterAuthSession
from conversations.tests.factories import BetterAuthSessionFactory


@pytest.fixture
def session() -> BetterAuthSession:
    """A valid Better Auth session (and its user)."""
    return BetterAuthSessionFactory.create()


@pytest.fixture
def api(session: BetterAuthSession) -> APIClient:
    """A client sending `session`'s raw token as a bearer token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.token}")
    return client
