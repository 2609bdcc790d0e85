"""Django settings for the FORGE, read from the environment.

Production is the default: ``DEBUG`` is off unless set, and then ``SECRET_KEY`` and ``ALLOWED_HOSTS``
must be given or the FORGE refuses to start with a message naming what is missing. With ``DEBUG=true``
(what ``make run`` uses) a secret key is generated once and kept under ``ANVIL_DATA_DIR``.

Environment:
    DATABASE_URL      sqlite:///path or postgresql://user@host:5432/db (default: SQLite under ANVIL_DATA_DIR)
    ANVIL_DATA_DIR    where the SQLite database and generated files live (default: ./var)
    SECRET_KEY        required when DEBUG is off
    ALLOWED_HOSTS     comma-separated; required when DEBUG is off
    DEBUG             true/false (default false)
    ANVIL_PUBLIC_URL  the URL LIVE clients and peers use to reach this FORGE (goes into bundles)
    EMAIL_URL         smtp://user:pass@host:port, smtp+tls://..., smtp+ssl://..., console:// (default: no e-mail)
    EMAIL_FROM        the sender of the FORGE's e-mail (invitations, password resets, review notifications)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in TRUE_WORDS


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("ANVIL_DATA_DIR") or Path.cwd() / "var").resolve()
DEBUG = _env_bool("DEBUG")
TESTING = _env_bool("ANVIL_TESTING")
# Set by `anvil-forge` for its console commands (all but `serve`): they answer no requests, so they need no
# ALLOWED_HOSTS, and without SECRET_KEY they use the key `make run` generated under ANVIL_DATA_DIR (the same key
# the FORGE there runs with, which encrypts the stored peer tokens).
CONSOLE = _env_bool("ANVIL_CONSOLE_COMMAND")


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        if not DEBUG and len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY is too short: use at least 32 random characters.")
        return key
    key_file = DATA_DIR / "secret_key"
    if CONSOLE and not DEBUG and key_file.is_file():
        return key_file.read_text().strip()
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`), or set DEBUG=true for local use."
        )
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG and not CONSOLE:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set. Set ALLOWED_HOSTS to the host names this FORGE answers to, "
            "comma-separated (for example forge.example.com), or set DEBUG=true for local use."
        )
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

ANVIL_PUBLIC_URL = os.environ.get("ANVIL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "anvil_forge.core",
    "anvil_forge.accounts",
    "anvil_forge.audit",
    "anvil_forge.prompts",
    "anvil_forge.distribution",
    "anvil_forge.health",
    "anvil_forge.peering",
    "anvil_forge.webhooks",
    "anvil_forge.notifications",
    "anvil_forge.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "anvil_forge.core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "anvil_forge.web.middleware.HtmxSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "anvil_forge.core.middleware.ApplicationErrorMiddleware",
]

ROOT_URLCONF = "anvil_forge.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "anvil_forge.web.context_processors.navigation",
                "anvil_forge.notifications.context_processors.attention",
            ],
        },
    },
]

ASGI_APPLICATION = "anvil_forge.asgi.application"


def _database() -> dict:
    url = os.environ.get("DATABASE_URL")
    if not url:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{DATA_DIR / 'forge.sqlite3'}"
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers (the stream's release checks) run beside a writer; IMMEDIATE makes
        # write transactions take the lock up front instead of failing half-way on upgrade.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {})
    else:
        raise ImproperlyConfigured(f"DATABASE_URL names an unsupported database: {config['ENGINE']}")
    # Django's backend with a kept pool of connections (core/backends: each request under ASGI runs in a fresh
    # thread, so Django alone would open a new connection for every one). ANVIL_DB_POOL_SIZE=0 turns it off.
    config["ENGINE"] = "anvil_forge.core.backends." + config["ENGINE"].rsplit(".", 1)[1]
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    # Tests create many users; argon2 at production cost would dominate the suite's time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Django's ModelBackend, refusing sign-ins for a while after repeated failures (accounts/backends.py).
AUTHENTICATION_BACKENDS = ["anvil_forge.accounts.backends.RateLimitedModelBackend"]
ANVIL_LOGIN_MAX_FAILURES = int(os.environ.get("ANVIL_LOGIN_MAX_FAILURES", "5"))
ANVIL_LOGIN_WINDOW_SECONDS = int(os.environ.get("ANVIL_LOGIN_WINDOW_SECONDS", "300"))

# E-mail is off unless EMAIL_URL is set (accounts/mail.py); without it, pages show the links to hand over.
from anvil_forge.accounts.mail import email_settings  # noqa: E402

globals().update(email_settings(os.environ.get("EMAIL_URL", ""), os.environ.get("EMAIL_FROM", "")))

LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 12
CSRF_COOKIE_SAMESITE = "Lax"
# Cookies travel over HTTPS only, unless DEBUG, or ANVIL_COOKIE_SECURE=false for a loopback-only FORGE.
SESSION_COOKIE_SECURE = _env_bool("ANVIL_COOKIE_SECURE", default=not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HTTPS behind a TLS proxy (docs/operations.md, "HTTPS behind a TLS proxy"): the proxy's X-Forwarded-Proto says
# whether a request came over HTTPS; plain HTTP is then redirected (except /healthz, for load balancers), and
# ANVIL_HSTS_SECONDS tells browsers to use nothing but HTTPS for that long.
BEHIND_TLS_PROXY = _env_bool("ANVIL_BEHIND_TLS_PROXY")
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _env_bool("ANVIL_HTTPS_REDIRECT", default=BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("ANVIL_HSTS_SECONDS") or "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("ANVIL_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = _env_bool("ANVIL_HSTS_PRELOAD")

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_DIR = BASE_DIR / "web" / "static"

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level() -> str:
    """``ANVIL_LOG_LEVEL``, in any case ("warning", "WARNING"); an unknown level is refused with the known ones."""
    raw = os.environ.get("ANVIL_LOG_LEVEL", "")
    level = raw.strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise ImproperlyConfigured(
            f"ANVIL_LOG_LEVEL={raw!r} is not a log level: use one of {', '.join(name.lower() for name in _LOG_LEVELS)}."
        )
    return level


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "anvil_forge": {"handlers": ["console"], "level": _log_level()},
        "django": {"handlers": ["console"], "level": "WARNING"},
    },
}

# Distribution tunables (see docs/operations.md).
ANVIL_STREAM_HEARTBEAT_SECONDS = float(os.environ.get("ANVIL_STREAM_HEARTBEAT_SECONDS", "15"))
ANVIL_STREAM_MAX_AGE_SECONDS = float(os.environ.get("ANVIL_STREAM_MAX_AGE_SECONDS", "3600"))
ANVIL_STREAM_MAX_CONNECTIONS = int(os.environ.get("ANVIL_STREAM_MAX_CONNECTIONS", "20000"))
ANVIL_STREAM_INLINE_BUNDLE_BYTES = int(os.environ.get("ANVIL_STREAM_INLINE_BUNDLE_BYTES", "65536"))
ANVIL_RELEASE_POLL_SECONDS = float(os.environ.get("ANVIL_RELEASE_POLL_SECONDS", "1"))
# The LIVE API's caches (distribution/caches.py) are emptied by every publish and revocation; no entry is used
# longer than this after it was read, for changes that announce nothing on PostgreSQL.
ANVIL_LIVE_CACHE_SECONDS = float(os.environ.get("ANVIL_LIVE_CACHE_SECONDS", "1"))
# SQLite: how often the serving process checks the file for commits by others (`anvil-forge publish`).
ANVIL_CHANGE_CHECK_SECONDS = float(os.environ.get("ANVIL_CHANGE_CHECK_SECONDS", "0.02"))
# PostgreSQL, several processes: how often each reports its open streams, and how far above the mean a
# process sheds some (distribution/rebalance.py). 0 seconds turns rebalancing off.
ANVIL_STREAM_REBALANCE_SECONDS = float(os.environ.get("ANVIL_STREAM_REBALANCE_SECONDS", "10"))
ANVIL_STREAM_REBALANCE_MARGIN = float(os.environ.get("ANVIL_STREAM_REBALANCE_MARGIN", "0.2"))

# Peering (see peering/config.py): other FORGEs from configuration, and how long and how much to wait for them.
ANVIL_PEERS = os.environ.get("ANVIL_PEERS", "")
ANVIL_PEER_TIMEOUT_SECONDS = float(os.environ.get("ANVIL_PEER_TIMEOUT_SECONDS", "5"))
ANVIL_PEER_MAX_BYTES = int(os.environ.get("ANVIL_PEER_MAX_BYTES", str(5 * 1024 * 1024)))
# The hosts a peer URL may name, in ALLOWED_HOSTS' syntax ("forge.example.com", ".example.com", "*"): the
# FORGE connects to no other. Default "*" (any host; internal addresses are refused anyway unless
# ANVIL_PEER_PRIVATE_NETWORKS names them).
ANVIL_PEER_ALLOWED_HOSTS = [host.lower() for host in _env_list("ANVIL_PEER_ALLOWED_HOSTS")] or ["*"]
# Networks (CIDR, comma-separated: "10.20.0.0/16,127.0.0.1/32") of non-public addresses a peer may be at. Default
# none: the FORGE connects only to public addresses (checked on the address resolved, at connect time).
ANVIL_PEER_PRIVATE_NETWORKS = _env_list("ANVIL_PEER_PRIVATE_NETWORKS")
# Page views and connection tests start at most this many live reads of one peer a minute (per process); past
# that they show the last answer (see peering/throttle.py).
ANVIL_PEER_PAGE_READS_PER_MINUTE = int(os.environ.get("ANVIL_PEER_PAGE_READS_PER_MINUTE", "30"))

# Webhooks (webhooks/drain.py): retried with exponential backoff from ANVIL_WEBHOOK_RETRY_BASE_SECONDS, doubling up
# to an hour apart, for ANVIL_WEBHOOK_RETRY_HOURS; their URLs obey the peers' address rules (ANVIL_PEER_*).
ANVIL_WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("ANVIL_WEBHOOK_RETRY_BASE_SECONDS", "30"))
ANVIL_WEBHOOK_RETRY_HOURS = float(os.environ.get("ANVIL_WEBHOOK_RETRY_HOURS", "24"))
ANVIL_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("ANVIL_WEBHOOK_TIMEOUT_SECONDS", "10"))
ANVIL_WEBHOOK_POLL_SECONDS = float(os.environ.get("ANVIL_WEBHOOK_POLL_SECONDS", "5"))
# /metrics (core/metrics.py) answers only when this is set, and only to "Authorization: Bearer <it>".
ANVIL_METRICS_TOKEN = os.environ.get("ANVIL_METRICS_TOKEN", "").strip()
