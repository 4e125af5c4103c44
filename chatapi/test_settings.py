"""Settings for the test suite: production settings at CONTRACT §6 defaults.

Only DATABASE_URL is taken from the environment, so a developer's `.env`
cannot change what the tests check.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-test-only-secret-key")
os.environ.setdefault("BETTER_AUTH_SECRET", "insecure-test-only-better-auth-secret")

from chatapi.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = "insecure-test-only-secret-key"
BETTER_AUTH_SECRET = "insecure-test-only-better-auth-secret"
BETTER_AUTH_SESSION_TABLE = "session"
BETTER_AUTH_USER_TABLE = "user"
BETTER_AUTH_COOKIE_PREFIX = "better-auth"
BETTER_AUTH_REQUIRE_SIGNATURE = False
AGENT_BACKEND = "agent.backends.stub.StubAgent"
AGENT_TIMEOUT_SECONDS = 30.0
AGENT_CONTEXT_MESSAGES = 20
AGENT_CONTEXT_MAX_CHARS = 64000
AGENT_STUB_STREAM_DELAY_SECONDS = 0.0
CHAT_MAX_MESSAGE_CHARS = 32000
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
FRONTEND_ORIGINS = CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
RATE_LIMIT_CHAT = "60/minute"
RATE_LIMIT_READ = "600/minute"
RATE_LIMIT_AUTH_FAILURES = "30/minute"
RATE_LIMIT_ADMIN_LOGIN = "10/hour"
RATE_LIMIT_SCHEMA = "60/minute"
NUM_PROXIES = REST_FRAMEWORK["NUM_PROXIES"] = 0  # noqa: F405
# Each test process counts on its own; tests that need Redis say so.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
BETTER_AUTH_JWKS_URL = BETTER_AUTH_JWKS_TABLE = ""
BETTER_AUTH_JWKS_MAX_STALE_SECONDS = 3600
BETTER_AUTH_JWKS_GRACE_SECONDS = 2592000
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
