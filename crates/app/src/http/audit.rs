//! The audit trail of credential access: what was done to whose credentials, by whom, with
//! which key, in which request. Never a value.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use user_service_domain::{AuditEvent, Page, UserId};

use crate::http::credentials::existing_user;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::middleware::Caller;
use crate::http::users::{PageQuery, Pagination};
use crate::state::AppState;

/// One page of audit events, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The events of this page, newest first.
    pub items: Vec<AuditEvent>,
    /// Where the page lies in the whole trail.
    pub pagination: Pagination,
}

/// `GET /users/me/broker-credentials/audit?limit&offset`: the caller's own trail.
#[utoipa::path(get, path = "/users/me/broker-credentials/audit", operation_id = "list_own_audit", tag = "credentials", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = AuditPage), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_own(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = caller.user_id;
    page_of(state, caller, target, query.into_inner()).await
}

/// `GET /users/{user_id}/broker-credentials/audit?limit&offset` (operators).
#[utoipa::path(get, path = "/users/{user_id}/broker-credentials/audit", operation_id = "list_other_audit", tag = "operators", security(("bearer" = [])), params(("user_id" = i64, Path), PageQuery),
    responses((status = 200, body = AuditPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_other(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = existing_user(&state, UserId(user_id.into_inner())).await?;
    page_of(state, caller, target, query.into_inner()).await
}

async fn page_of(
    state: web::Data<AppState>,
    caller: Caller,
    target: UserId,
    query: PageQuery,
) -> Result<HttpResponse, ApiError> {
    let page = Page::new(query.limit, query.offset)?;
    let (items, total) = state
        .credentials
        .audit_trail(&caller.context(), target, page)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuditPage {
            pagination: Pagination::new(page, items.len(), total),
            items,
        }))
}
