"""Settings of the baseline project (same PostgreSQL server and Redis as ours, own database)."""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-baseline-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["daphne", "channels", "bench.baseline"]
ASGI_APPLICATION = "bench.baseline.asgi.application"
ROOT_URLCONF = "bench.baseline.asgi"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ["DATABASE_URL"],
        # As given by bench/run.py (both flavours alike); "none": kept for good (Django's None).
        conn_max_age=None
        if os.environ.get("DB_CONN_MAX_AGE", "0").lower() in ("", "none")
        else int(os.environ["DB_CONN_MAX_AGE"]),
    )
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Stock settings, except redis-py 8's 5 s read timeout, which kills idle receive loops
        # (the same fix as chatroom/settings.py; without it the baseline cannot hold idle sockets).
        "CONFIG": {
            "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": "bench-baseline",
        },
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
