"""Better Auth's users and sessions for tests, as Better Auth would write them."""

import datetime as dt

from django.utils import timezone

import factory
from factory.django import DjangoModelFactory

from better_auth.authentication import sign_token
from better_auth.models import BetterAuthSession, BetterAuthUser


class BetterAuthUserFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthUser

    id = factory.Faker("pystr", min_chars=24, max_chars=24)
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda user: f"{user.id.lower()}@example.com")


class BetterAuthSessionFactory(DjangoModelFactory):
    class Meta:
        model = BetterAuthSession

    id = factory.Faker("pystr", min_chars=32, max_chars=32)
    token = factory.Faker("pystr", min_chars=32, max_chars=32)
    user = factory.SubFactory(BetterAuthUserFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=7))

    class Params:
        expired = factory.Trait(
            expires_at=factory.LazyFunction(
                lambda: timezone.now() - dt.timedelta(seconds=1)
            )
        )


def signed_token(session: BetterAuthSession) -> str:
    """`token.signature`, as Better Auth's cookie and set-auth-token carry it."""
    return sign_token(session.token)
