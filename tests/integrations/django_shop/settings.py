"""Settings of the test project: SQLite in $DJANGO_SHOP_DB, no middleware of its own."""

from __future__ import annotations

import os

SECRET_KEY = "threadline-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django_shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "django_shop.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SHOP_DB", ":memory:"),
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
