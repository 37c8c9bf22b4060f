//! Embedded sign-in: `POST /auth/register`, `POST /auth/login`, `POST /auth/refresh`,
//! `POST /auth/logout`, `POST /auth/password` and `GET /auth/me`, for standalone use and the
//! `/account` page.
//!
//! Every refresh token stands for a stored session (docs/security.md, "Sessions"): a refresh
//! rotates it (the presented token is spent, the new one is of the same family), presenting a
//! spent token again revokes its whole family, signing out revokes the family and a password
//! change revokes every session of the user. The refresh token is also set in the
//! [`REFRESH_COOKIE`] cookie (`HttpOnly; Secure; SameSite=Strict; Path=/auth`), which `refresh`
//! and `logout` read when the body has no token — then only with the header
//! `X-Requested-With: user-service`, which a cross-site form cannot send.
//!
//! The routes exist only with `AUTH_MODE=embedded` (the default); with `external` they answer
//! `404` as any unknown path. Register and login are rate-limited per account and client address,
//! per client address, and loosely per account
//! ([`SignInLimits`](crate::http::limits::SignInLimits)), so that a guesser is stopped without
//! locking the account's owner out. A wrong password and an unknown e-mail get the same answer
//! after the same argon2 work, so that neither the body nor the timing tells whether an account
//! exists.
//! Passwords and tokens only live in [`SecretString`]s: they never reach a log line or an error.

use std::net::IpAddr;

use actix_web::guard::{self, GuardContext};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use user_service_crypto::tokens::REFRESH_TOKEN_TTL_SECS;
use user_service_crypto::{SessionClaims, TokenKind};
use user_service_domain::{
    Action, DomainError, Email, NewSession, PresentedSession, Principal, RefreshOutcome, UserId,
};

use crate::config::AuthMode;
use crate::http::error::{ApiError, ErrorBody, ErrorCode};
use crate::http::middleware::{Authorize, Caller};
use crate::state::AppState;

/// Detail of the `401` answered for a wrong password and an unknown e-mail alike.
pub const INVALID_CREDENTIALS: &str = "Invalid email or password";
/// Detail of the `401` answered by `POST /auth/password` for a wrong current password.
pub const WRONG_CURRENT_PASSWORD: &str = "Invalid current password";
/// Name of the cookie holding the refresh token (`Path=/auth`, so a `__Host-` name is
/// impossible).
pub const REFRESH_COOKIE: &str = "user_service_refresh";
/// Header (and value) a request must carry when its refresh token comes from the cookie.
pub const CSRF_HEADER: &str = "x-requested-with";
/// The value of [`CSRF_HEADER`].
pub const CSRF_VALUE: &str = "user-service";

/// Registers the `/auth/*` routes, active only while `AUTH_MODE=embedded`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::http::resource::open;
    cfg.service(
        web::scope("/auth")
            .guard(guard::fn_guard(embedded))
            .service(open("/register", "POST").route(web::post().to(register)))
            .service(open("/login", "POST").route(web::post().to(login)))
            .service(open("/refresh", "POST").route(web::post().to(refresh)))
            .service(open("/logout", "POST").route(web::post().to(logout)))
            .service(
                open("/password", "POST")
                    .route(web::post().to(change_password))
                    .wrap(Authorize(Action::RegisterSelf)),
            )
            .service(
                open("/me", "GET")
                    .route(web::get().to(me))
                    .wrap(Authorize(Action::RegisterSelf)),
            ),
    );
}

/// Routes under `/auth` match only when this service signs users in.
fn embedded(ctx: &GuardContext<'_>) -> bool {
    ctx.app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.settings.auth_mode == AuthMode::Embedded)
}

/// Body of `POST /auth/register` and `POST /auth/login`. `Debug` shows the password as
/// `[REDACTED]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignInBody {
    /// E-mail address (trimmed, lower-cased).
    #[schema(
        value_type = String,
        pattern = r"^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\s\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+@[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+(\.[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+)+[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        max_length = 255,
        example = "trader@example.com"
    )]
    email: String,
    /// 12 to 256 characters with an upper-case letter, a lower-case letter, a digit and a
    /// symbol (checked on register; on login any string is compared).
    #[schema(value_type = String, format = Password, max_length = 1024, example = "Correct-Horse-9!")]
    password: SecretString,
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`; without a token, the cookie's is used.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    /// The refresh token of the pair; absent: the `user_service_refresh` cookie's, which is only
    /// read with the header `X-Requested-With: user-service`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
}

/// Body of `POST /auth/password`. `Debug` shows both passwords as `[REDACTED]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordBody {
    /// The password in use.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    current_password: SecretString,
    /// 12 to 256 characters with an upper-case letter, a lower-case letter, a digit and a symbol.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    new_password: SecretString,
}

// Documentation only: the `TokenPair` sent borrows its strings, which a schema cannot.
/// The token pair a sign-in answers.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = TokenPair)]
#[allow(dead_code)]
pub struct TokenPairSchema {
    /// Bearer token for every API route; lasts 15 minutes.
    access_token: String,
    /// Token for `POST /auth/refresh` and `POST /auth/logout`; lasts 7 days, spent on use.
    refresh_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    token_type: String,
}

/// `{access_token, refresh_token, token_type: "bearer"}`; only built to be serialised at once.
#[derive(Serialize)]
struct TokenPair<'a> {
    access_token: &'a str,
    refresh_token: &'a str,
    token_type: &'static str,
}

/// A new session for `user`: in `family` when rotating, in a new family when signing in,
/// expiring one refresh-token lifetime after `now`.
fn new_session(
    user: UserId,
    family: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> NewSession {
    let fresh = || uuid::Uuid::new_v4().simple().to_string();
    NewSession {
        id: fresh(),
        family: family.map_or_else(fresh, str::to_owned),
        user,
        expires_at: now + chrono::Duration::seconds(REFRESH_TOKEN_TTL_SECS),
    }
}

/// `Set-Cookie` value holding the refresh token, for the `/account` page.
fn refresh_cookie(token: &str) -> String {
    format!(
        "{REFRESH_COOKIE}={token}; Path=/auth; Max-Age={REFRESH_TOKEN_TTL_SECS}; HttpOnly; Secure; SameSite=Strict"
    )
}

/// `Set-Cookie` value removing the refresh cookie.
fn cleared_cookie() -> String {
    format!("{REFRESH_COOKIE}=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// A fresh access + refresh pair for the stored `session`, never cached by the client or a
/// proxy; the refresh token is also set in the cookie.
fn token_pair(state: &AppState, session: &NewSession, status: StatusCode) -> HttpResponse {
    let codec = state.tokens();
    let access = codec.issue_access(&Principal::User(session.user));
    let claims = SessionClaims {
        id: session.id.clone(),
        family: session.family.clone(),
    };
    let refresh = codec.issue_refresh(session.user, &claims);
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, refresh_cookie(refresh.expose_secret())))
        .json(TokenPair {
            access_token: access.expose_secret(),
            refresh_token: refresh.expose_secret(),
            token_type: "bearer",
        })
}

/// Starts a new session family for `user` and answers its pair.
async fn sign_in(
    state: &AppState,
    user: UserId,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let session = new_session(user, None, state.clock.now());
    state.sign_in.start_session(&session).await?;
    Ok(token_pair(state, &session, status))
}

/// The refresh token of the request: the body's, or else the cookie's — the latter only with
/// [`CSRF_HEADER`] set to [`CSRF_VALUE`] (`403` otherwise). `401 Invalid token` when neither.
fn presented_token(
    req: &HttpRequest,
    body: Option<SecretString>,
) -> Result<SecretString, ApiError> {
    if let Some(token) = body {
        return Ok(token);
    }
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == REFRESH_COOKIE && !value.is_empty())
        .map(|(_, value)| SecretString::from(value.to_owned()))
        .ok_or_else(ApiError::invalid_token)?;
    let marked = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        == Some(CSRF_VALUE);
    if !marked {
        return Err(ApiError::new(
            ErrorCode::OperationNotPermitted,
            "A refresh token from the cookie requires the header X-Requested-With: user-service",
        ));
    }
    Ok(cookie)
}

/// The session the request's refresh token (body or cookie, see [`presented_token`]) claims,
/// once its signature, expiry and kind are checked.
fn presented_session(
    state: &AppState,
    req: &HttpRequest,
    body: RefreshBody,
) -> Result<PresentedSession, ApiError> {
    let token = presented_token(req, body.refresh_token)?;
    let verified = state
        .tokens()
        .verify(token.expose_secret())
        .map_err(|_| ApiError::invalid_token())?;
    match (verified.kind, verified.principal, verified.session) {
        (TokenKind::Refresh, Principal::User(user), Some(session)) => Ok(PresentedSession {
            user,
            id: session.id,
            family: session.family,
        }),
        _ => Err(ApiError::invalid_token()),
    }
}

/// The e-mail (parsed) and password of a sign-in attempt, once the password of a new account
/// meets the policy and the attempt is within the sign-in limits of the account and the address.
async fn admit(
    state: &AppState,
    req: &HttpRequest,
    body: web::Json<SignInBody>,
    new_account: bool,
) -> Result<(Email, SecretString), ApiError> {
    let SignInBody { email, password } = body.into_inner();
    let email = Email::parse(&email)?;
    if new_account {
        user_service_domain::password::check_policy(&password).map_err(DomainError::from)?;
    }
    state
        .sign_in_limits
        .check(email.as_str(), client_address(req))
        .await?;
    Ok((email, password))
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, INVALID_CREDENTIALS)
}

/// `POST /auth/register {email, password}`: creates an active user with an argon2id hash and
/// signs it in (`201` with a token pair). `422` names the password rule; `409` when the e-mail
/// is taken.
#[utoipa::path(post, path = "/auth/register", operation_id = "sign_up", tag = "sign-in", request_body = SignInBody,
    responses((status = 201, description = "Account created and signed in; the refresh token is also set as an HttpOnly cookie", body = TokenPairSchema), (status = 409, description = "Email already registered", body = ErrorBody), (status = 422, description = "Invalid e-mail, or a password breaking the policy (the rule is named)", body = ErrorBody), (status = 429, description = "Too many attempts for this account or address; `Retry-After` says when", body = ErrorBody)))]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SignInBody>,
) -> Result<HttpResponse, ApiError> {
    let (email, password) = admit(&state, &req, body, true).await?;
    let user = state.sign_in.register(email, &password).await?;
    log::info!(target: "signin", "user {} registered", user.id);
    sign_in(&state, user.id, StatusCode::CREATED).await
}

/// `POST /auth/login {email, password}` → `200` with a token pair, or `401 Invalid email or
/// password` for a wrong password, an unknown e-mail and an account without a password alike.
#[utoipa::path(post, path = "/auth/login", operation_id = "sign_in", tag = "sign-in", request_body = SignInBody,
    responses((status = 200, description = "Signed in; the refresh token is also set as an HttpOnly cookie", body = TokenPairSchema), (status = 401, description = "Invalid email or password (the same answer for an unknown e-mail)", body = ErrorBody), (status = 422, description = "Invalid e-mail", body = ErrorBody), (status = 429, description = "Too many attempts for this account or address; `Retry-After` says when", body = ErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SignInBody>,
) -> Result<HttpResponse, ApiError> {
    let (email, password) = admit(&state, &req, body, false).await?;
    let signed_in = state.sign_in.check_password(&email, &password).await?;
    match signed_in {
        Some(id) => {
            log::info!(target: "signin", "user {id} signed in");
            sign_in(&state, id, StatusCode::OK).await
        }
        None => {
            log::info!(target: "signin", "sign-in refused: invalid email or password");
            Err(invalid_credentials())
        }
    }
}

/// `POST /auth/refresh {refresh_token}` (or `{}` with the cookie) → a new pair in the same
/// session family; the presented token is spent. Access tokens, expired, forged, spent, revoked
/// or unknown refresh tokens and tokens of deleted users get `401 Invalid token`; a spent token
/// presented again also revokes its whole family.
#[utoipa::path(post, path = "/auth/refresh", tag = "sign-in", request_body = RefreshBody,
    responses((status = 200, description = "A new pair in the same session; the presented refresh token is spent", body = TokenPairSchema), (status = 401, description = "Invalid token: not a refresh token of a live session (a spent one also ends its session family)", body = ErrorBody), (status = 403, description = "The cookie was to be used without the `X-Requested-With: user-service` header", body = ErrorBody)))]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let presented = presented_session(&state, &req, body.into_inner())?;
    match state.users.get(presented.user).await {
        Ok(_) => {}
        Err(DomainError::NotFound(_)) => return Err(ApiError::invalid_token()),
        Err(other) => return Err(other.into()),
    }
    let next = new_session(presented.user, Some(&presented.family), state.clock.now());
    match state.sign_in.refresh(&presented, &next).await? {
        RefreshOutcome::Rotated => Ok(token_pair(&state, &next, StatusCode::OK)),
        RefreshOutcome::Refused | RefreshOutcome::ReuseDetected => Err(ApiError::invalid_token()),
    }
}

/// `POST /auth/logout {refresh_token}` (or `{}` with the cookie) → `204`: the token's session
/// family is revoked (signing out again is `204` too) and the cookie cleared. A token that is
/// not a valid refresh token of a stored session gets `401 Invalid token`.
#[utoipa::path(post, path = "/auth/logout", tag = "sign-in", request_body = RefreshBody,
    responses((status = 204, description = "Signed out: the session family is revoked and the cookie cleared"), (status = 401, description = "Invalid token", body = ErrorBody), (status = 403, description = "The cookie was to be used without the `X-Requested-With: user-service` header", body = ErrorBody)))]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let presented = presented_session(&state, &req, body.into_inner())?;
    if !state.sign_in.end_session(&presented).await? {
        return Err(ApiError::invalid_token());
    }
    log::info!(target: "signin", "user {} signed out", presented.user);
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, cleared_cookie()))
        .finish())
}

/// `POST /auth/password {current_password, new_password}` (bearer access token) → `200` with a
/// fresh pair in a new session family: every earlier session of the user is revoked (access
/// tokens do not name their session, so the caller's own is renewed rather than kept). A wrong
/// current password gets `401 Invalid current password` (code `invalid_credentials`); a new
/// password breaking the policy `422` naming the rule. Rate-limited like sign-in.
#[utoipa::path(post, path = "/auth/password", tag = "sign-in", security(("bearer" = [])), request_body = PasswordBody,
    responses((status = 200, description = "Password changed; every earlier session is ended and a fresh pair returned", body = TokenPairSchema), (status = 401, description = "Missing or invalid token, or the current password is wrong", body = ErrorBody), (status = 403, description = "A service principal has no password", body = ErrorBody), (status = 404, description = "The account no longer exists", body = ErrorBody), (status = 422, description = "The new password breaks the policy (the rule is named)", body = ErrorBody), (status = 429, description = "Too many attempts; `Retry-After` says when", body = ErrorBody)))]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let PasswordBody {
        current_password,
        new_password,
    } = body.into_inner();
    user_service_domain::password::check_policy(&new_password)
        .map_err(|violation| ApiError::invalid_field("new_password", violation.0))?;
    let user = state.users.get(caller.user_id).await?;
    state
        .sign_in_limits
        .check(user.email.as_str(), client_address(&req))
        .await?;
    let changed = state
        .sign_in
        .change_password(user.id, &current_password, &new_password)
        .await
        .map_err(|error| match error {
            DomainError::PasswordPolicy(violation) => {
                ApiError::invalid_field("new_password", violation.0)
            }
            other => other.into(),
        })?;
    if !changed {
        log::info!(target: "signin", "password change refused for user {}: wrong current password", user.id);
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            WRONG_CURRENT_PASSWORD,
        ));
    }
    log::info!(target: "signin", "user {} changed its password; its other sessions are revoked", user.id);
    sign_in(&state, user.id, StatusCode::OK).await
}

/// `GET /auth/me` (bearer access token) → the caller's profile.
#[utoipa::path(get, path = "/auth/me", tag = "sign-in", security(("bearer" = [])),
    responses((status = 200, description = "The signed-in user's profile", body = user_service_domain::User), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "A service principal has no profile", body = ErrorBody), (status = 404, description = "The account no longer exists", body = ErrorBody)))]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let user = state.users.get(caller.user_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(user))
}

/// The address a sign-in attempt is counted against: the TCP peer, or behind a balancer listed in
/// `TRUSTED_PROXIES` the client it forwarded for (right-most untrusted `X-Forwarded-For` entry;
/// any other peer's header is ignored: anyone could rotate it), with IPv6 addresses grouped by
/// /64, the block one subscriber usually holds.
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.settings.trusted_proxies.as_ref());
    let address = match trusted {
        Some(trusted) => trusted.client(
            peer,
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|value| value.to_str().ok()),
        ),
        None => peer,
    };
    Some(match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sign_in_bodies_do_not_show_passwords_or_tokens_in_debug() {
        let body: SignInBody =
            serde_json::from_str(r#"{"email":"a@example.com","password":"Hunter2-Hunter2"}"#)
                .unwrap();
        let shown = format!("{body:?}");
        assert!(!shown.contains("Hunter2"), "{shown}");
        let body: RefreshBody =
            serde_json::from_str(r#"{"refresh_token":"eyJhbGciOi.secret.part"}"#).unwrap();
        let shown = format!("{body:?}");
        assert!(!shown.contains("secret.part"), "{shown}");
    }
}
