//! How a route's resource is built: other methods answer `405` with `Allow`, and a guarded
//! resource's routes require authorization.

use std::future::ready;

use actix_web::dev::HttpServiceFactory;
use actix_web::{web, HttpResponse, Resource};
use user_service_domain::Action;

use crate::http::error::ApiError;
use crate::http::middleware::Authorize;

/// A public resource answering 405 with `Allow` for other methods.
pub(super) fn open(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || {
        ready(Err::<HttpResponse, _>(ApiError::method_not_allowed(allow)))
    }))
}

/// A resource whose routes (added by `routes`) require authentication and the capabilities of
/// `action`; other methods answer 405 with `Allow`.
pub(super) fn guarded(
    path: &str,
    allow: &'static str,
    action: Action,
    routes: impl FnOnce(Resource) -> Resource,
) -> impl HttpServiceFactory {
    routes(open(path, allow)).wrap(Authorize(action))
}
