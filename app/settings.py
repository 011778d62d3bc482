"""Typed settings, read from the environment once and passed in (never imported as a global)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"
DEV_CARRIER_SECRET = "dev-only-carrier-secret-change-me-0123456789"
MIN_SECRET_LENGTH = 32


class SettingsError(RuntimeError):
    """The configuration is unsafe or inconsistent; the process must not start."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def _env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw in (None, "") else raw


def _env_list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class RateLimits:
    """Budgets of DESIGN §4, as `limits` strings ("60/minute")."""

    lookups_per_user: str = "60/minute"
    lookups_per_ip: str = "120/minute"
    failed_lookups_per_user: str = "10/15 minutes"
    failed_lookups_per_ip: str = "30/15 minutes"
    support_lookups_per_agent: str = "120/hour"
    tracking_views_per_token_ip: str = "60/minute"
    # Staff doors (fulfilment, returns handling) with the role: budgets of their own, sized
    # for a warehouse shift (a picker handles 20+ orders a minute, several doors each).
    staff_lookups_per_user: str = "240/minute"
    staff_failed_lookups_per_user: str = "60/15 minutes"
    registrations_per_ip: str = "30/hour"
    login_backoff_base_seconds: int = 1
    login_backoff_cap_seconds: int = 3600
    # Failed logins an address may have before its own back-off starts (the email's starts
    # at the first); many people share an address.
    login_ip_free_failures: int = 10


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    database_url: str = "sqlite:///var/orders.db"
    redis_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "orders-api"
    jwt_audience: str = "orders-api-clients"
    carrier_webhook_secret: str = DEV_CARRIER_SECRET  # HMAC key of POST /webhooks/carrier
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "Orders <orders@shop.example>"
    mail_dir: Path = Path("var/mail")
    # What every email shows: the shop's name, where customers write to, and the front end
    # the email links to (`{shop_url}/orders#<code>`: the code only in the fragment).
    shop_name: str = "Orders Shop"
    shop_support_email: str = "support@shop.example"
    shop_url: str = "http://127.0.0.1:5173"
    # Where this API is reached from outside: the one-click unsubscribe link of milestone
    # emails points to `{public_api_url}/unsubscribe?token=…`.
    public_api_url: str = "http://127.0.0.1:8000"
    outbox_poll_seconds: float = 2.0
    outbox_max_attempts: int = 12
    max_page_size: int = 50
    shipping_flat_minor: int = 495
    free_shipping_from_minor: int = 5000
    tax_rate_basis_points: int = 2000  # 20 % VAT, included in prices (see README)
    currency: str = "EUR"
    delivery_business_days: int = 3
    checkout_ttl_seconds: int = 24 * 3600
    request_timeout_seconds: float = 15.0
    # Slow clients: a request's headers must arrive within `http_header_timeout_seconds` of
    # the connection opening (or of the first byte of the next request on a kept-alive
    # connection), and its body within `http_body_timeout_seconds` after them; otherwise
    # 408 and the connection is closed (app/serving.py, app/http.py).
    http_header_timeout_seconds: float = 5.0
    http_body_timeout_seconds: float = 10.0
    # Database connections per instance (a request holds one while it runs); None: 20 on
    # PostgreSQL, 5 on SQLite.
    db_pool_size: int | None = None
    # Payments: a provider call longer than this is given up (the reconciler finds out
    # whether it charged); stock reserved for a payment that never completed is released
    # after `reservation_ttl_seconds`; the reconciler looks at reservations and refunds
    # older than `reconcile_after_seconds` (longer than any live request may take: the
    # request time cap), every `reconcile_interval_seconds`.
    payment_timeout_seconds: float = 10.0
    reservation_ttl_seconds: int = 15 * 60
    reconcile_after_seconds: float = 60.0
    reconcile_interval_seconds: float = 10.0
    test_payment_latency_seconds: float = 0.0  # every call of the test provider takes this
    compiled_plans: bool = True  # COMPILED_PLANS=off serves every query by the general path
    return_window_days: int = 30  # from a parcel's delivery
    auto_refund_on_receipt: bool = False  # refund as soon as the warehouse receives a return
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    rate_limits: RateLimits = field(default_factory=RateLimits)
    log_level: str = "INFO"
    debug: bool = False
    metrics_token: str | None = None  # production serves /metrics only to this bearer
    # "open": any document, and clients may register documents by hash (APQ);
    # "allowlist": only the documents of app/graphql/persisted_queries.json (from examples/)
    persisted_queries: str = "open"
    staff_console: bool = True  # STAFF_CONSOLE=false: no /console/ (app/console/)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        limits = RateLimits(
            lookups_per_user=_env_str("RATE_LOOKUPS_PER_USER", RateLimits.lookups_per_user),
            lookups_per_ip=_env_str("RATE_LOOKUPS_PER_IP", RateLimits.lookups_per_ip),
            failed_lookups_per_user=_env_str(
                "RATE_FAILED_LOOKUPS_PER_USER", RateLimits.failed_lookups_per_user
            ),
            failed_lookups_per_ip=_env_str(
                "RATE_FAILED_LOOKUPS_PER_IP", RateLimits.failed_lookups_per_ip
            ),
            support_lookups_per_agent=_env_str(
                "RATE_SUPPORT_LOOKUPS_PER_AGENT", RateLimits.support_lookups_per_agent
            ),
            tracking_views_per_token_ip=_env_str(
                "RATE_TRACKING_VIEWS", RateLimits.tracking_views_per_token_ip
            ),
            staff_lookups_per_user=_env_str(
                "RATE_STAFF_LOOKUPS_PER_USER", RateLimits.staff_lookups_per_user
            ),
            staff_failed_lookups_per_user=_env_str(
                "RATE_STAFF_FAILED_LOOKUPS_PER_USER", RateLimits.staff_failed_lookups_per_user
            ),
            registrations_per_ip=_env_str(
                "RATE_REGISTRATIONS_PER_IP", RateLimits.registrations_per_ip
            ),
            login_backoff_base_seconds=_env_int(
                "LOGIN_BACKOFF_BASE_SECONDS", RateLimits.login_backoff_base_seconds
            ),
            login_backoff_cap_seconds=_env_int(
                "LOGIN_BACKOFF_CAP_SECONDS", RateLimits.login_backoff_cap_seconds
            ),
            login_ip_free_failures=_env_int(
                "LOGIN_IP_FREE_FAILURES", RateLimits.login_ip_free_failures
            ),
        )
        smtp_host = os.environ.get("SMTP_HOST") or None
        settings = cls(
            app_env=_env_str("APP_ENV", cls.app_env),
            database_url=_env_str("DATABASE_URL", cls.database_url),
            redis_url=os.environ.get("REDIS_URL") or None,
            jwt_secret=_env_str("JWT_SECRET", cls.jwt_secret),
            jwt_issuer=_env_str("JWT_ISSUER", cls.jwt_issuer),
            jwt_audience=_env_str("JWT_AUDIENCE", cls.jwt_audience),
            carrier_webhook_secret=_env_str("CARRIER_WEBHOOK_SECRET", cls.carrier_webhook_secret),
            access_token_ttl_seconds=_env_int("ACCESS_TOKEN_TTL_SECONDS", 900),
            refresh_token_ttl_seconds=_env_int("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600),
            smtp_host=smtp_host,
            smtp_port=_env_int("SMTP_PORT", 25),
            smtp_username=os.environ.get("SMTP_USERNAME") or None,
            smtp_password=os.environ.get("SMTP_PASSWORD") or None,
            smtp_starttls=os.environ.get("SMTP_STARTTLS", "") in ("1", "true", "yes"),
            mail_from=_env_str("MAIL_FROM", cls.mail_from),
            mail_dir=Path(_env_str("MAIL_DIR", str(cls.mail_dir))),
            shop_name=_env_str("SHOP_NAME", cls.shop_name),
            shop_support_email=_env_str("SHOP_SUPPORT_EMAIL", cls.shop_support_email),
            shop_url=_env_str("SHOP_URL", cls.shop_url).rstrip("/"),
            public_api_url=_env_str("PUBLIC_API_URL", cls.public_api_url).rstrip("/"),
            max_page_size=_env_int("MAX_PAGE_SIZE", cls.max_page_size),
            checkout_ttl_seconds=_env_int("CHECKOUT_TTL_SECONDS", cls.checkout_ttl_seconds),
            request_timeout_seconds=_env_float(
                "REQUEST_TIMEOUT_SECONDS", cls.request_timeout_seconds
            ),
            http_header_timeout_seconds=_env_float(
                "HTTP_HEADER_TIMEOUT_SECONDS", cls.http_header_timeout_seconds
            ),
            http_body_timeout_seconds=_env_float(
                "HTTP_BODY_TIMEOUT_SECONDS", cls.http_body_timeout_seconds
            ),
            db_pool_size=_env_int("DB_POOL_SIZE", 0) or None,
            payment_timeout_seconds=_env_float(
                "PAYMENT_TIMEOUT_SECONDS", cls.payment_timeout_seconds
            ),
            reservation_ttl_seconds=_env_int(
                "RESERVATION_TTL_SECONDS", cls.reservation_ttl_seconds
            ),
            reconcile_after_seconds=_env_float(
                "RECONCILE_AFTER_SECONDS", cls.reconcile_after_seconds
            ),
            reconcile_interval_seconds=_env_float(
                "RECONCILE_INTERVAL_SECONDS", cls.reconcile_interval_seconds
            ),
            compiled_plans=os.environ.get("COMPILED_PLANS", "on").lower()
            not in ("0", "off", "false", "no"),
            test_payment_latency_seconds=_env_float(
                "TEST_PAYMENT_LATENCY_SECONDS", cls.test_payment_latency_seconds
            ),
            return_window_days=_env_int("RETURN_WINDOW_DAYS", cls.return_window_days),
            auto_refund_on_receipt=os.environ.get("AUTO_REFUND_ON_RECEIPT", "").lower()
            in ("1", "true", "yes"),
            outbox_poll_seconds=float(
                _env_str("OUTBOX_POLL_SECONDS", str(cls.outbox_poll_seconds))
            ),
            trusted_proxies=_env_list("TRUSTED_PROXIES"),
            cors_origins=_env_list("CORS_ORIGINS"),
            rate_limits=limits,
            log_level=_env_str("LOG_LEVEL", cls.log_level),
            debug=os.environ.get("DEBUG", "") in ("1", "true", "yes"),
            metrics_token=os.environ.get("METRICS_TOKEN") or None,
            persisted_queries=_env_str("PERSISTED_QUERIES", cls.persisted_queries).lower(),
            staff_console=os.environ.get("STAFF_CONSOLE", "true").lower()
            not in ("0", "off", "false", "no"),
        )
        if overrides:
            settings = replace(settings, **overrides)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse to run production with development secrets or debug switches."""
        if self.access_token_ttl_seconds > 900 or self.access_token_ttl_seconds <= 0:
            raise SettingsError("ACCESS_TOKEN_TTL_SECONDS must be between 1 and 900")
        if not 0 <= self.return_window_days <= 3650:
            raise SettingsError("RETURN_WINDOW_DAYS must be between 0 and 3650")
        if self.persisted_queries not in ("open", "allowlist"):
            raise SettingsError("PERSISTED_QUERIES must be `open` or `allowlist`")
        if self.db_pool_size is not None and self.db_pool_size < 1:
            raise SettingsError("DB_POOL_SIZE must be at least 1")
        shop = urlsplit(self.shop_url)
        # Emails link to {SHOP_URL}/orders#<code>: a query or a fragment of its own would
        # put the code somewhere else, and a relative URL goes nowhere in a mail client.
        if shop.scheme not in ("http", "https") or not shop.netloc or shop.query or shop.fragment:
            raise SettingsError("SHOP_URL must be an absolute http(s) URL without ? or #")
        if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+", self.shop_support_email):
            raise SettingsError("SHOP_SUPPORT_EMAIL must be one plain email address")
        api = urlsplit(self.public_api_url)
        if api.scheme not in ("http", "https") or not api.netloc or api.query or api.fragment:
            raise SettingsError("PUBLIC_API_URL must be an absolute http(s) URL without ? or #")
        if self.reconcile_after_seconds <= max(
            self.request_timeout_seconds, self.payment_timeout_seconds
        ):
            # Younger reservations may still belong to a live request.
            raise SettingsError(
                "RECONCILE_AFTER_SECONDS must be longer than REQUEST_TIMEOUT_SECONDS and "
                "PAYMENT_TIMEOUT_SECONDS"
            )
        if self.reservation_ttl_seconds < self.reconcile_after_seconds:
            raise SettingsError("RESERVATION_TTL_SECONDS must be at least RECONCILE_AFTER_SECONDS")
        if not self.is_production:
            return
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"production needs JWT_SECRET set to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters"
            )
        if (
            self.carrier_webhook_secret == DEV_CARRIER_SECRET
            or len(self.carrier_webhook_secret) < MIN_SECRET_LENGTH
        ):
            raise SettingsError(
                f"production needs CARRIER_WEBHOOK_SECRET set to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters"
            )
        if self.debug:
            raise SettingsError("DEBUG must be off in production")

    def describe(self) -> dict[str, Any]:
        """Settings for logs, with secrets left out."""
        hidden = {"jwt_secret", "smtp_password", "carrier_webhook_secret", "metrics_token"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}
