//! Users, preferences and onboarding routes, kept from the original service: they translate
//! HTTP to the domain's user service and back.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Deserializer, Serialize};
use user_service_domain::user::profile_field;
use user_service_domain::{
    Email, NewUser, OnboardingProgress, Page, Principal, User, UserId, UserPatch, ValidationError,
};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::middleware::{AnyCaller, Caller};
use crate::state::AppState;

/// Profile fields of an update request: an absent field is kept, `null` or blank clears a name
/// or the phone. No field accepts control characters.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProfileBody {
    /// E-mail address (trimmed, lower-cased).
    #[schema(
        pattern = r"^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\s\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+@[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+(\.[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+)+[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        max_length = 255,
        example = "trader@example.com"
    )]
    email: Option<String>,
    /// At most 120 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$", max_length = 120)]
    first_name: Option<Option<String>>,
    /// At most 120 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$", max_length = 120)]
    last_name: Option<Option<String>>,
    /// At most 32 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$", max_length = 32)]
    phone: Option<Option<String>>,
    marketing_opt_in: Option<bool>,
    /// Operators only; ignored otherwise.
    is_active: Option<bool>,
}

/// Profile of a new user: as [`ProfileBody`], with `email` required (documentation of the
/// create and register bodies, which are read as a [`ProfileBody`]).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewProfileBody {
    /// E-mail address (trimmed, lower-cased).
    #[schema(
        pattern = r"^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\s\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+@[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+(\.[^@\s.\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+)+[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        max_length = 255,
        example = "trader@example.com"
    )]
    email: String,
    /// At most 120 characters.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$",
        max_length = 120
    )]
    first_name: Option<String>,
    /// At most 120 characters.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$",
        max_length = 120
    )]
    last_name: Option<String>,
    /// At most 32 characters.
    #[schema(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$",
        max_length = 32
    )]
    phone: Option<String>,
    marketing_opt_in: Option<bool>,
    /// Default `false` on `/users/register`, `true` on `POST /users`.
    is_active: Option<bool>,
}

/// The onboarding steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum OnboardingStepName {
    /// `account-profile`
    AccountProfile,
    /// `api-keys`
    ApiKeys,
    /// `execution-mode`
    ExecutionMode,
}

fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl ProfileBody {
    fn new_user(self, id: Option<UserId>, active: bool) -> Result<NewUser, ApiError> {
        let email = self.email.ok_or_else(|| {
            ApiError::from(ValidationError::Invalid {
                field: "email",
                reason: "is required",
            })
        })?;
        let mut user = NewUser::with_email(Email::parse(&email)?);
        user.id = id;
        user.first_name = profile_field("first_name", self.first_name.flatten())?;
        user.last_name = profile_field("last_name", self.last_name.flatten())?;
        user.phone = profile_field("phone", self.phone.flatten())?;
        user.marketing_opt_in = self.marketing_opt_in.unwrap_or(false);
        user.is_active = self.is_active.unwrap_or(active);
        Ok(user)
    }

    fn patch(self, may_activate: bool) -> Result<UserPatch, ApiError> {
        let text = |field, value: Option<Option<String>>| -> Result<_, ValidationError> {
            value.map(|v| profile_field(field, v)).transpose()
        };
        Ok(UserPatch {
            email: self.email.as_deref().map(Email::parse).transpose()?,
            first_name: text("first_name", self.first_name)?,
            last_name: text("last_name", self.last_name)?,
            phone: text("phone", self.phone)?,
            marketing_opt_in: self.marketing_opt_in,
            is_active: if may_activate { self.is_active } else { None },
        })
    }
}

/// `POST /users/register`: a user creates its own profile (id = the token's subject); a service
/// principal creates a new user, which gets the next free id.
#[utoipa::path(post, path = "/users/register", tag = "users", security(("bearer" = [])), request_body = NewProfileBody,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn register(
    state: web::Data<AppState>,
    caller: AnyCaller,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let id = match caller.0.principal {
        Principal::User(id) => Some(id),
        Principal::Service(_) => None,
    };
    let new_user = body.into_inner().new_user(id, false)?;
    let user = state.users.create(new_user, None).await?;
    Ok(HttpResponse::Created().json(user))
}

/// `POST /users` (operators).
#[utoipa::path(post, path = "/users", tag = "users", security(("bearer" = [])), request_body = NewProfileBody,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    _caller: Caller,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let new_user = body.into_inner().new_user(None, true)?;
    let user = state.users.create(new_user, None).await?;
    Ok(HttpResponse::Created().json(user))
}

/// Query of `GET /users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[param(maximum = 9223372036854775807_u64)]
    pub offset: Option<u64>,
}

/// Where a page lies in the whole list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pagination {
    /// Items in the whole list.
    pub total: u64,
    /// Items in this page.
    pub count: usize,
    /// The page size asked for.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

impl Pagination {
    /// Where `count` items of `page` lie among `total`.
    pub fn new(page: Page, count: usize, total: u64) -> Self {
        Self {
            total,
            count,
            limit: page.limit,
            offset: page.offset,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct UserPage {
    items: Vec<User>,
    pagination: Pagination,
}

/// `GET /users?limit&offset` (operators).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserPage), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::new(query.limit, query.offset)?;
    let (items, total) = state.users.list(page).await?;
    Ok(HttpResponse::Ok().json(UserPage {
        pagination: Pagination::new(page, items.len(), total),
        items,
    }))
}

/// `GET /users/me`.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.users.get(caller.user_id).await?))
}

/// `PUT /users/me`.
#[utoipa::path(put, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn update_me(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner().patch(false)?;
    Ok(HttpResponse::Ok().json(state.users.update(caller.user_id, &patch).await?))
}

/// `DELETE /users/me` (soft delete).
#[utoipa::path(delete, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_me(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let target = caller.user_id;
    soft_delete(&state, &caller, target).await
}

/// `GET /users/{user_id}` (operators).
#[utoipa::path(get, path = "/users/{user_id}", tag = "users", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_user(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.users.get(UserId(id.into_inner())).await?))
}

/// `PATCH /users/{user_id}` (operators).
#[utoipa::path(patch, path = "/users/{user_id}", tag = "users", security(("bearer" = [])), params(("user_id" = i64, Path)), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn patch_user(
    state: web::Data<AppState>,
    _caller: Caller,
    id: web::Path<i64>,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner().patch(true)?;
    Ok(HttpResponse::Ok().json(state.users.update(UserId(id.into_inner()), &patch).await?))
}

/// `DELETE /users/{user_id}` (operators; soft delete).
#[utoipa::path(delete, path = "/users/{user_id}", tag = "users", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    soft_delete(&state, &caller, UserId(id.into_inner())).await
}

async fn soft_delete(
    state: &web::Data<AppState>,
    caller: &Caller,
    id: UserId,
) -> Result<HttpResponse, ApiError> {
    state.users.delete(&caller.context(), id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /users/{user_id}/activate`: the user itself, or an operator.
#[utoipa::path(post, path = "/users/{user_id}/activate", tag = "users", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn activate(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .users
        .activate(caller.user_id, UserId(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Preferences {
    #[schema(value_type = Object)]
    preferences: serde_json::Value,
}

/// Body of `PUT /users/me/preferences`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PreferencesBody {
    #[schema(value_type = Object)]
    preferences: serde_json::Map<String, serde_json::Value>,
}

/// `PUT /users/me/preferences`.
#[utoipa::path(put, path = "/users/me/preferences", tag = "users", security(("bearer" = [])), request_body = PreferencesBody,
    responses((status = 200, body = Preferences), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_preferences(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<PreferencesBody>,
) -> Result<HttpResponse, ApiError> {
    let value = serde_json::Value::Object(body.into_inner().preferences);
    let preferences = state.users.put_preferences(caller.user_id, value).await?;
    Ok(HttpResponse::Ok().json(Preferences { preferences }))
}

/// `GET /users/me/onboarding`.
#[utoipa::path(get, path = "/users/me/onboarding", tag = "onboarding", security(("bearer" = [])),
    responses((status = 200, body = OnboardingProgress), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_onboarding(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.users.onboarding(caller.user_id).await?))
}

/// `POST /users/me/onboarding/steps/{step}`.
#[utoipa::path(post, path = "/users/me/onboarding/steps/{step}", tag = "onboarding", security(("bearer" = [])), params(("step" = OnboardingStepName, Path, description = "account-profile, api-keys or execution-mode")),
    responses((status = 200, body = OnboardingProgress), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn complete_step(
    state: web::Data<AppState>,
    caller: Caller,
    step: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.users.complete_step(caller.user_id, &step).await?))
}

/// `POST /users/me/onboarding/reset`.
#[utoipa::path(post, path = "/users/me/onboarding/reset", tag = "onboarding", security(("bearer" = [])),
    responses((status = 200, body = OnboardingProgress), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reset_onboarding(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.users.reset_onboarding(caller.user_id).await?))
}
