"""Settings for chatroom, read from the environment with safe defaults.

With no environment at all the project runs on the embedded default: a SQLite file under
``var/`` and the in-memory channel layer (one process). Production sets ``DATABASE_URL``
(PostgreSQL), ``REDIS_URL`` (channels-redis), ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DEBUG=0``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHAT_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean flag: 1/true/yes/on are true, anything else false."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_json(name: str, default: object) -> object:
    """Read a JSON value, so dict-shaped settings can be overridden from the environment."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from exc


DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
SECRET_KEY = os.environ.get("SECRET_KEY", _DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured("Set SECRET_KEY: the development key is refused when DEBUG is off.")

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "conversations",
    "bots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatroom.urls"
ASGI_APPLICATION = "chatroom.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite runs in WAL mode with IMMEDIATE transactions, so concurrent writers queue on the lock
# (busy timeout) instead of failing when a read transaction tries to upgrade to a write.
VAR_DIR.mkdir(parents=True, exist_ok=True)
_DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'chatroom.sqlite3'}")
# Persistent connections on PostgreSQL: with 0, every database_sync_to_async call of a socket
# opened a new connection (bench/: echo round trip p50 800 -> 80 ms); with a maximum age, the
# first call after it opens one again (the echo's p99: a bot worker's threads idle for a
# minute). Health checks drop a connection the server closed before it is reused. SQLite
# opens a file: nothing to keep.
_IS_SQLITE = _DATABASE_URL.startswith("sqlite")


def _conn_max_age(default: str) -> int | None:
    """``DB_CONN_MAX_AGE``: seconds, or ``none`` to keep a connection while it is healthy."""
    value = os.environ.get("DB_CONN_MAX_AGE", default).strip().lower()
    return None if value in ("", "none") else int(value)


DATABASES = {
    "default": dj_database_url.parse(
        _DATABASE_URL,
        conn_max_age=_conn_max_age("0" if _IS_SQLITE else "none"),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not shared-cache memory: live server processes started by tests must see it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check by poll(), not by a SELECT 1 round trip per
    # socket call, and prepared hot statements (chatroom/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "chatroom.postgresql"
    # Its few hand-written hot statements are prepared once per connection (a pooler in
    # transaction mode needs protocol-level support for that, e.g. PgBouncer >= 1.21).
    DATABASES["default"]["PREPARED_STATEMENTS"] = os.environ.get("DB_PREPARED_STATEMENTS", "1") != "0"
if os.environ.get("TEST_DATABASE_NAME") and not _IS_SQLITE:
    # Lets several test runs share one PostgreSQL server without clobbering each other.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ---------------------------------------------------------------------------
# channels-redis drops messages silently past its capacity (default 100 per channel): the
# capacity here is deliberate and generous, and bursts are covered by seq-based resume anyway.
REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_CAPACITY = int(os.environ.get("CHANNEL_CAPACITY", "10000"))
#: With Redis: "pubsub" (default) fans a group message out inside each process, one Redis read
#: per process (chatroom/layers.py); "core" is channels-redis's queue per socket (bench/).
CHANNEL_LAYER = os.environ.get("CHANNEL_LAYER", "pubsub")
if CHANNEL_LAYER not in ("pubsub", "core"):
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be pubsub or core, not {CHANNEL_LAYER!r}")
# redis-py 8 reads with a 5 s socket timeout by default, the same as the 5 s BZPOPMIN that
# channels-redis core blocks on: an idle consumer then dies with TimeoutError. Reads may block
# longer than the pop; connects may not. redis-py's async pool holds 100 connections and then
# *raises* (it does not wait): 200 sockets closing at once failed their group_discard (bench/).
REDIS_HOST = {
    "address": REDIS_URL,
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "2000")),
}
if REDIS_URL and CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatroom.layers.ConfirmedPubSubChannelLayer",
            # Pub/sub keeps no queue in Redis: no capacity to overflow, nothing expires.
            "CONFIG": {"hosts": [REDIS_HOST], "prefix": os.environ.get("CHANNEL_PREFIX", "chatroom")},
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_HOST],
                "capacity": CHANNEL_CAPACITY,
                "expiry": 60,
                "group_expiry": 86400,
                "prefix": os.environ.get("CHANNEL_PREFIX", "chatroom"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60},
        }
    }

# --- Internationalisation, static and media --------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Uploads larger than the biggest per-kind limit are refused before they are read whole.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- Chat ------------------------------------------------------------------------------------
# Overrides of conversations.limits.DEFAULT_LIMITS, e.g. CHAT_LIMITS='{"MAX_TEXT_LENGTH": 2000}'.
CHAT_LIMITS = env_json("CHAT_LIMITS", {})

# name -> spec (class path, args, kwargs, trigger, description); see docs/bots.md.
CHAT_INSTALLED_BOTS = env_json(
    "CHAT_INSTALLED_BOTS",
    {
        "echo": {
            "class": "bots.builtin.echo.EchoBot",
            "description": "Repeats what you say.",
        },
    },
)
# Name of an installed bot that joins every conversation as its manager (unset: none).
CHAT_BOT_MANAGER = os.environ.get("CHAT_BOT_MANAGER", "") or None
# The bot worker runs inside daphne unless there is Redis (then: manage.py botworker); docs/bots.md.
CHAT_EMBEDDED_BOT_WORKER = env_bool("CHAT_EMBEDDED_BOT_WORKER", not REDIS_URL)
CHAT_BOT_TIMEOUT = float(os.environ.get("CHAT_BOT_TIMEOUT", "10"))  # seconds per delivery
CHAT_BOT_HOP_LIMIT = int(os.environ.get("CHAT_BOT_HOP_LIMIT", "3"))  # bot-to-bot replies before bots stop hearing

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler would print every record twice beside the root one.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.channels.server": {"level": "WARNING"},
    },
}
