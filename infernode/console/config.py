"""The `console:` settings section: local users, session lifetimes, login limits."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Role(StrEnum):
    """What a console user may do. Each role includes the ones before it."""

    VIEWER = "viewer"      # sees the node's state; never a patient identifier
    OPERATOR = "operator"  # + patient identifiers, retry / replay / dead-letter actions
    ADMIN = "admin"        # + the configuration page and model enable / disable

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ConsoleUser(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role = Role.VIEWER
    password_hash: str = Field(
        min_length=1, description="argon2 hash from `infernode console hash-password`")


class OidcConfig(BaseModel):
    """Single sign-on with an OpenID Connect provider (authorization code flow with PKCE)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="the provider's issuer URL (its discovery document is "
                        "ISSUER/.well-known/openid-configuration)")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(
        default=None, description="confidential client secret (HTTP basic at the token "
        "endpoint); none: a public client, PKCE only")
    redirect_url: str | None = Field(
        default=None, description="the callback URL registered at the provider; default: "
        "this node's own /login/oidc/callback as the browser reached it")
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    username_claim: str = "preferred_username"
    roles_claim: str = Field(default="groups", description="ID token claim listing the "
                             "user's groups or roles (a list or one string)")
    role_map: dict[str, Role] = Field(
        default_factory=dict, description="claim value -> console role; the highest role "
        "mapped wins; a user with none is refused")
    label: str = Field(default="Single sign-on", description="the login page's button")
    timeout_s: float = Field(default=10.0, gt=0)


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve the console at / on the web port")
    users: tuple[ConsoleUser, ...] = Field(
        default=(), description="local users; none configured: nobody can log in")
    secure_cookie: bool = Field(
        default=False, description="mark the session cookie Secure even when the request "
        "arrived over plain HTTP (behind a TLS-terminating proxy); HTTPS requests always do")
    session_idle_s: float = Field(default=1800.0, gt=0,
                                  description="a session unused this long ends")
    session_max_s: float = Field(default=43200.0, gt=0,
                                 description="a session ends this long after login, used or not")
    login_attempts: int = Field(
        default=5, ge=1, description="failed logins allowed per address and per user name "
        "within login_window_s; more are refused until the window passes")
    login_window_s: float = Field(default=300.0, gt=0)
    oidc: OidcConfig | None = Field(default=None, description="single sign-on (optional)")
