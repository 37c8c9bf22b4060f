//! The `/account` page (docs/account-page.md): one HTML file, one style sheet and one script, embedded in
//! the binary at build time (no CDN, no front-end server, no build step), served with a strict
//! Content-Security-Policy. The page talks to the JSON API of the same origin; see
//! `docs/account-page.md`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

/// The page.
pub const HTML: &str = include_str!("../../assets/account/index.html");
/// Its only script.
pub const SCRIPT: &str = include_str!("../../assets/account/account.js");
/// Its only style sheet.
pub const STYLE: &str = include_str!("../../assets/account/account.css");

/// Path of the page.
pub const PAGE_PATH: &str = "/account";
/// Path of the script (referenced by the page).
pub const SCRIPT_PATH: &str = "/account/account.js";
/// Path of the style sheet (referenced by the page).
pub const STYLE_PATH: &str = "/account/account.css";

/// Same-origin script, style and requests only; no inline code, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Registers the page and its two assets (`GET` and `HEAD`; other methods answer 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let assets: [(&str, &'static str, &'static str, &'static str); 3] = [
        (PAGE_PATH, HTML, "text/html; charset=utf-8", "no-store"),
        (
            SCRIPT_PATH,
            SCRIPT,
            "text/javascript; charset=utf-8",
            "no-cache",
        ),
        (STYLE_PATH, STYLE, "text/css; charset=utf-8", "no-cache"),
    ];
    for (path, body, content_type, cache) in assets {
        let serve = move || async move { asset(body, content_type, cache) };
        cfg.service(
            super::resource::open(path, "GET, HEAD")
                .route(web::get().to(serve))
                .route(web::head().to(serve)),
        );
    }
    // A person who types the host name, or a trailing slash, lands on the page.
    cfg.service(web::redirect("/", PAGE_PATH))
        .service(web::redirect("/account/", PAGE_PATH));
}

/// One embedded file with the security headers every part of the page carries.
fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static(cache)))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .body(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::App;

    use super::*;

    #[actix_web::test]
    async fn the_page_and_its_assets_carry_the_security_headers() {
        let app = init_service(App::new().configure(configure)).await;
        for (path, kind, cache) in [
            (PAGE_PATH, "text/html", "no-store"),
            (SCRIPT_PATH, "text/javascript", "no-cache"),
            (STYLE_PATH, "text/css", "no-cache"),
        ] {
            let response = call_service(&app, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            let value = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
            assert!(value("content-type").starts_with(kind), "{path}");
            assert_eq!(value("cache-control"), cache, "{path}");
            assert_eq!(value("content-security-policy"), CONTENT_SECURITY_POLICY);
            assert_eq!(value("x-content-type-options"), "nosniff");
            assert_eq!(value("referrer-policy"), "no-referrer");
        }
    }

    #[test]
    fn the_page_references_its_assets_and_has_no_inline_code_or_style() {
        assert!(HTML.contains(&format!(r#"<script src="{SCRIPT_PATH}" defer></script>"#)));
        assert!(HTML.contains(&format!(r#"<link rel="stylesheet" href="{STYLE_PATH}">"#)));
        // CSP forbids them; a forgotten one would silently not run or not apply.
        assert_eq!(
            HTML.matches("<script").count(),
            1,
            "one external script only"
        );
        assert!(!HTML.contains("<style"), "no inline style element");
        assert!(!HTML.contains(" style="), "no style attribute");
        assert!(
            !HTML.contains("http://") && !HTML.contains("https://"),
            "no external resource"
        );
        assert!(
            !SCRIPT.contains("innerHTML"),
            "text is set with textContent only"
        );
        assert!(
            !SCRIPT.contains("localStorage") && !SCRIPT.contains("sessionStorage"),
            "tokens stay in memory"
        );
        assert!(
            !SCRIPT.contains("document.cookie"),
            "the refresh cookie is HttpOnly: the script never touches cookies"
        );
        assert!(
            !SCRIPT.contains("refresh_token"),
            "the script keeps no refresh token: the browser holds it in the HttpOnly cookie"
        );
        assert!(!SCRIPT.contains(".style"), "no inline style from script");
    }

    /// Whether the text has an attribute like ` onclick=`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn inline_handlers_are_detected() {
        assert!(has_inline_handler(r#"<button onclick="x()">"#));
        assert!(!has_inline_handler("<p>one card per broker, only</p>"));
        assert!(!has_inline_handler(HTML));
    }

    #[test]
    fn every_input_of_the_page_has_a_label() {
        let mut inputs = 0;
        for (at, _) in HTML.match_indices("<input") {
            inputs += 1;
            let tag = HTML[at..].split('>').next().unwrap();
            let before = &HTML[..at];
            let inside_label = before
                .rfind("<label")
                .is_some_and(|open| before.rfind("</label>").is_none_or(|close| close < open));
            let id = tag
                .split(" id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            let labelled_by_id =
                id.is_some_and(|id| HTML.contains(&format!(r#"<label for="{id}""#)));
            assert!(inside_label || labelled_by_id, "no <label> for {tag}>");
        }
        assert!(
            inputs >= 5,
            "sign-in, register and card inputs are all checked"
        );
    }
}
