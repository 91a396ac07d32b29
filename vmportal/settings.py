"""vmportal settings, read from the environment (one module; production is a mode, not a file).

VMPORTAL_PRODUCTION=1 turns on the deployment hardening that `manage.py check --deploy` asks for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Lets ModelAdmin[Model], QuerySet[Model] and friends be subscripted at run time, for mypy.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VMPORTAL_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


PRODUCTION = _env_bool("VMPORTAL_PRODUCTION")
DEBUG = _env_bool("VMPORTAL_DEBUG") and not PRODUCTION

SECRET_KEY = os.environ.get("VMPORTAL_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("VMPORTAL_SECRET_KEY must be set in production.")
    SECRET_KEY = "insecure-development-key-never-use-in-production-0123456789"  # noqa: S105

ALLOWED_HOSTS = _env_list("VMPORTAL_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("VMPORTAL_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "vmportal.apps.VmportalStaticFilesConfig",  # django.contrib.staticfiles, collecting no .html
    "channels",
    "django_htmx",
    "template_partials",
    "accounts",
    "audit",
    "domains",
    "consoles",
    "networks",
    "storage",
    "people",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from the installed package (no CDN)
    "api",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # recovery codes (accounts.recovery_codes)
]

MIDDLEWARE = [
    "domains.metrics.RequestDurationMiddleware",  # first, so it times everything the others do too
    "django.middleware.security.SecurityMiddleware",
    "vmportal.csp.ContentSecurityPolicyMiddleware",  # before WhiteNoise, so static files carry it too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's language (or the cookie's); then the user's:
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.languages.UserLanguageMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): signed in with a second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.AdminSecondFactorMiddleware",  # VMPORTAL_REQUIRE_ADMIN_2FA: enrol before anything else
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so it sees the user and request.htmx: a libvirt error no view caught becomes a page.
    "vmportal.errors.VirtErrorMiddleware",
]

ROOT_URLCONF = "vmportal.urls"
ASGI_APPLICATION = "vmportal.asgi.application"

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
                "domains.context_processors.live_since",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=0 if "DATABASE_URL" not in os.environ else 60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests in a file, as the server runs: threads (migration runners) then wait for each other's locks
    # instead of failing at once, as they do on the shared in-memory database Django would use.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # One writer at a time: the console proxy's threads (hundreds of consoles opening and closing in one
    # process) wait their turn longer than sqlite3's 5 s before "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Write-ahead logging: readers (every page) never wait for a writer (the usage collector writes each
    # host's sample every interval), nor it for them; NORMAL syncs at checkpoints, as WAL allows safely.
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# A process's channels are its live hub's, which carries every live message for the whole process, and its
# watchers' (every page's replay request): room for a burst (domains.hub, domains.supervisor). They keep the
# layer's default prefix: channels-redis receives for one prefix per process, and another would wait on it.
LIVE_CHANNEL_CAPACITY = {"specific.*": 10_000}
if REDIS_URL:
    from redis.exceptions import ConnectionError as RedisConnectionError

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py's read timeout (5 s by default) raced channels-redis's blocking receive (5 s) and lost.
            # After a Redis restart each pooled connection fails its first command: tried again once, on a
            # new connection, instead of losing that message.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15,
                                  "retry_on_error": [RedisConnectionError]}],
                       "channel_capacity": LIVE_CHANNEL_CAPACITY},
        }
    }
    CACHES: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "vmportal.layers.InMemoryChannelLayer",
                                  "CONFIG": {"channel_capacity": LIVE_CHANNEL_CAPACITY}}}
    # It holds every running guest's addresses (domains/guest_addresses.py): far more than the default 300 entries.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                          "OPTIONS": {"MAX_ENTRIES": 100_000}}}

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "domains:list"
LOGOUT_REDIRECT_URL = "accounts:login"
# Local accounts first; LDAP and OpenID Connect are added below when configured.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed logins allowed per (username, client address) and, higher, per client address, within a window
# that opens with the first failure (accounts/throttle.py). Neither counts per username alone: that
# would let anyone lock any account (admin included) out from anywhere.
LOGIN_FAILURE_LIMIT = int(os.environ.get("VMPORTAL_LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_ADDRESS_LIMIT = int(os.environ.get("VMPORTAL_LOGIN_FAILURE_ADDRESS_LIMIT", "30"))
LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("VMPORTAL_LOGIN_FAILURE_WINDOW_SECONDS", str(15 * 60)))
# Peers (addresses or networks) whose X-Forwarded-For names the client, for the pages, the login throttle
# and the console proxy alike (vmportal/clients.py). VMPORTAL_CONSOLE_TRUSTED_PROXIES is the old name.
TRUSTED_PROXIES = frozenset(_env_list(
    "VMPORTAL_TRUSTED_PROXIES", os.environ.get("VMPORTAL_CONSOLE_TRUSTED_PROXIES", "127.0.0.1,::1")))

# English and Vietnamese: the user's own setting (accounts.languages), else the language cookie, else the
# browser's Accept-Language. The catalogues are compiled by bin/setup (locale/*/LC_MESSAGES/django.mo).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Consoles: where browsers reach the proxy (a path on the page's origin behind the reverse proxy,
# ":PORT/PATH" for another port of the page's host, or a ws:// or wss:// URL); where
# `manage.py consoleproxy` listens; how long a ticket may wait to be opened (SECURITY.md: under 60 s);
# how often an open console re-checks its user's session and right.
CONSOLE_URL = os.environ.get("VMPORTAL_CONSOLE_URL", "/websockify")
CONSOLE_PROXY_BIND = os.environ.get("VMPORTAL_CONSOLE_PROXY_BIND", "127.0.0.1:6080")
CONSOLE_TICKET_SECONDS = max(1, min(59, int(os.environ.get("VMPORTAL_CONSOLE_TICKET_SECONDS", "30"))))
CONSOLE_RECHECK_SECONDS = max(0.2, float(os.environ.get("VMPORTAL_CONSOLE_RECHECK_SECONDS", "2")))

# Displays on a remote host's loopback or unix socket go through one SSH connection per host (OpenSSH's
# ControlMaster, consoles/tunnels.py): its control sockets live in this private directory (keep its path
# short: a unix socket path has at most 107 bytes), and it stays up this long after its last console.
SSH_CONTROL_DIR = Path(os.environ.get("VMPORTAL_SSH_CONTROL_DIR", VAR_DIR / "ssh"))
SSH_CONTROL_PERSIST_SECONDS = max(1, int(os.environ.get("VMPORTAL_SSH_CONTROL_PERSIST", "600")))

# How long one page waits for a slow host before showing it as unreachable.
HOST_DEADLINE_SECONDS = float(os.environ.get("VMPORTAL_HOST_DEADLINE", "3"))

# libvirt keepalive on every connection to a host (the watchers' and the pooled ones): a ping after
# INTERVAL seconds of silence, and the connection closed after COUNT more unanswered, so a host that goes
# silent is found out within INTERVAL * (COUNT + 1) seconds (8 by default; libvirt's own 5 and 5 make 30).
KEEPALIVE_INTERVAL = max(1, int(os.environ.get("VMPORTAL_KEEPALIVE_INTERVAL", "2")))
KEEPALIVE_COUNT = max(0, int(os.environ.get("VMPORTAL_KEEPALIVE_COUNT", "3")))

# Usage (domains.usage): each host watcher takes one bulk sample of its host's VMs this often, in seconds;
# 0 takes none. The history kept per VM is domains.history.RESOLUTIONS'.
USAGE_INTERVAL_SECONDS = max(0.0, float(os.environ.get("VMPORTAL_USAGE_INTERVAL", "10")))
# GET /metrics answers only `Authorization: Bearer <this>`; without one set, it answers nobody.
METRICS_TOKEN = os.environ.get("VMPORTAL_METRICS_TOKEN", "")

# Websockets and consoles, per user (SECURITY.md, "Websockets" and rule 11): how often an open live page
# re-checks its session and rights (a session ended elsewhere, a password change, a deactivation or a
# demotion reaches it within this); how many console connections one user may ask for per minute and
# keep open at once (0: no limit).
# The web process's startup heap (Django, the templates, every module: objects as old as the process) is
# frozen out of the garbage collector's full collections once it is warmed up (vmportal.lifespan).
FREEZE_STARTUP_HEAP = True
LIVE_RECHECK_SECONDS = max(0.1, float(os.environ.get("VMPORTAL_LIVE_RECHECK_SECONDS", "10")))
CONSOLE_TICKETS_PER_MINUTE = max(0, int(os.environ.get("VMPORTAL_CONSOLE_TICKETS_PER_MINUTE", "20")))
CONSOLE_OPEN_LIMIT = max(0, int(os.environ.get("VMPORTAL_CONSOLE_OPEN_LIMIT", "10")))

# The API (api/): bearer tokens or the session (with CSRF), errors as RFC 9457 problem details.
API_RATE = os.environ.get("VMPORTAL_API_RATE", "600/minute")  # per token (or session user); "" for no limit
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.BearerTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated",
                                   "api.authentication.ReadOnlyTokenRefusesWrites"],
    "DEFAULT_THROTTLE_CLASSES": ["api.authentication.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.problems.handle",
    "DEFAULT_METADATA_CLASS": None,  # OPTIONS answers 405: the schema describes every route
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "vmportal API",
    "DESCRIPTION": "The pages' services and permission gate, with tokens: send `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --- Sign-in: LDAP / Active Directory, OpenID Connect, TOTP (README "Sign-in methods"). ---
# VMPORTAL_LDAP_ROLE_GROUPS / VMPORTAL_OIDC_ROLE_GROUPS: "admin=GROUP;operator=GROUP;tenant=GROUP", a group
# an LDAP DN or an OIDC groups-claim value; a user gets the highest role of the groups they are in.
ROLE_NAMES = ("admin", "operator", "tenant")


def _env_role_groups(name: str) -> dict[str, str]:
    """{group (lower case): role} from NAME, or ImproperlyConfigured naming what is wrong."""
    mapping = {}
    for entry in os.environ.get(name, "").split(";"):
        if not entry.strip():
            continue
        role, _, group = entry.partition("=")
        if role.strip() not in ROLE_NAMES or not group.strip():
            raise ImproperlyConfigured(f"{name}: {entry.strip()!r} is not ROLE=GROUP with ROLE one of {ROLE_NAMES}")
        mapping[group.strip().lower()] = role.strip()
    return mapping


# An admin without a confirmed TOTP device must enrol before using anything (accounts.middleware). A deployment
# setting rather than a switch in the app: a stolen admin password alone could otherwise turn it off.
REQUIRE_ADMIN_2FA = _env_bool("VMPORTAL_REQUIRE_ADMIN_2FA")
OTP_TOTP_ISSUER = os.environ.get("VMPORTAL_OTP_ISSUER", "vmportal")  # the name authenticator apps show
SECOND_FACTOR_PENDING_SECONDS = 300  # between the right password and the code

LDAP_URI = os.environ.get("VMPORTAL_LDAP_URI", "")
LDAP_ROLE_GROUPS = _env_role_groups("VMPORTAL_LDAP_ROLE_GROUPS")
if LDAP_URI:
    import ldap
    from django_auth_ldap.config import ActiveDirectoryGroupType, GroupOfNamesType, LDAPSearch

    _active_directory = os.environ.get("VMPORTAL_LDAP_GROUP_TYPE", "groupOfNames") == "activeDirectory"
    AUTH_LDAP_SERVER_URI = LDAP_URI
    AUTH_LDAP_BIND_DN = os.environ.get("VMPORTAL_LDAP_BIND_DN", "")
    AUTH_LDAP_BIND_PASSWORD = os.environ.get("VMPORTAL_LDAP_BIND_PASSWORD", "")
    AUTH_LDAP_START_TLS = _env_bool("VMPORTAL_LDAP_START_TLS")
    AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_REFERRALS: 0, ldap.OPT_NETWORK_TIMEOUT: 5}  # AD's referrals hang
    if os.environ.get("VMPORTAL_LDAP_CA_FILE"):
        # This CA alone is trusted for the directory's certificate (StartTLS or ldaps://). NEWCTX comes last: it
        # makes libldap build this connection's TLS context from the options before it.
        AUTH_LDAP_CONNECTION_OPTIONS |= {ldap.OPT_X_TLS_CACERTFILE: os.environ["VMPORTAL_LDAP_CA_FILE"],
                                         ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
                                         ldap.OPT_X_TLS_NEWCTX: 0}
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        os.environ.get("VMPORTAL_LDAP_USER_BASE", ""), ldap.SCOPE_SUBTREE,
        os.environ.get("VMPORTAL_LDAP_USER_FILTER",
                       "(sAMAccountName=%(user)s)" if _active_directory else "(uid=%(user)s)"))
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        os.environ.get("VMPORTAL_LDAP_GROUP_BASE", ""), ldap.SCOPE_SUBTREE,
        "(objectClass=group)" if _active_directory else "(objectClass=groupOfNames)")
    AUTH_LDAP_GROUP_TYPE = ActiveDirectoryGroupType() if _active_directory else GroupOfNamesType()
    AUTH_LDAP_MIRROR_GROUPS = True  # the user's directory groups become their Django groups: group grants apply
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTHENTICATION_BACKENDS.append("accounts.ldap.DirectoryBackend")

OIDC_ISSUER = os.environ.get("VMPORTAL_OIDC_ISSUER", "").rstrip("/")
OIDC_PROVIDER_NAME = os.environ.get("VMPORTAL_OIDC_NAME", "single sign-on")  # "Sign in with <this>"
OIDC_GROUPS_CLAIM = os.environ.get("VMPORTAL_OIDC_GROUPS_CLAIM", "groups")
OIDC_ROLE_GROUPS = _env_role_groups("VMPORTAL_OIDC_ROLE_GROUPS")
if OIDC_ISSUER:
    # mozilla-django-oidc's settings; endpoints left empty come from the issuer's discovery document.
    OIDC_RP_CLIENT_ID = os.environ.get("VMPORTAL_OIDC_CLIENT_ID", "")
    OIDC_RP_CLIENT_SECRET = os.environ.get("VMPORTAL_OIDC_CLIENT_SECRET", "")
    OIDC_RP_SIGN_ALGO = os.environ.get("VMPORTAL_OIDC_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = os.environ.get("VMPORTAL_OIDC_SCOPES", "openid email profile")  # + "groups" where needed
    OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("VMPORTAL_OIDC_AUTHORIZATION_ENDPOINT", "")
    OIDC_OP_TOKEN_ENDPOINT = os.environ.get("VMPORTAL_OIDC_TOKEN_ENDPOINT", "")
    OIDC_OP_USER_ENDPOINT = os.environ.get("VMPORTAL_OIDC_USERINFO_ENDPOINT", "")
    OIDC_OP_JWKS_ENDPOINT = os.environ.get("VMPORTAL_OIDC_JWKS_ENDPOINT", "")
    # Signing out ends the provider's session too (accounts.oidc.provider_logout_url), with the ID token as hint.
    OIDC_OP_END_SESSION_ENDPOINT = os.environ.get("VMPORTAL_OIDC_END_SESSION_ENDPOINT", "")
    OIDC_OP_LOGOUT_URL_METHOD = "accounts.oidc.provider_logout_url"
    OIDC_STORE_ID_TOKEN = True
    OIDC_USE_PKCE = True
    OIDC_TIMEOUT = 10
    OIDC_AUTHENTICATION_CALLBACK_URL = "accounts:oidc-callback"
    AUTHENTICATION_BACKENDS.append("accounts.oidc.OpenIDConnectBackend")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Not "no-referrer": under it browsers send `Origin: null` with every form POST, which Django's CSRF
# check rejects (403 on the login form). "same-origin" still sends nothing to other sites.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every response (vmportal/csp.py): no inline script or style, no eval, no
# framing. connect-src also gets, per request, ws: and wss: of the page's host and CONSOLE_URL's origin.
# img-src and media-src take data: and blob: for the consoles (noVNC's cursor, spice-html5's images).
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "media-src": ["'self'", "blob:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "object-src": ["'none'"],
}
if OIDC_ISSUER:
    # Signing out posts here and is redirected to the provider's logout (accounts.oidc): form-action covers redirects.
    CONTENT_SECURITY_POLICY["form-action"].extend(dict.fromkeys(
        "{0.scheme}://{0.netloc}".format(urlsplit(url)) for url in (OIDC_ISSUER, OIDC_OP_END_SESSION_ENDPOINT) if url))

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("VMPORTAL_SSL_REDIRECT", True)
    # TLS ends at the reverse proxy, which says so in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("VMPORTAL_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("VMPORTAL_LOG_LEVEL", "INFO")},
}
