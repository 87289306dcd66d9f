//! The pages' style sheet and scripts, compiled into the binary and served
//! with an ETag; small enough to state a budget for (see the tests).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/site.css");
const JS: &str = include_str!("assets/site.js");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");

fn asset(request: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let etag = super::etag_of(body);
    let mut response = if super::is_fresh(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a header value"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub async fn css(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", CSS)
}

pub async fn js(headers: HeaderMap) -> Response {
    asset(&headers, "text/javascript; charset=utf-8", JS)
}

pub async fn dashboard_js(headers: HeaderMap) -> Response {
    asset(&headers, "text/javascript; charset=utf-8", DASHBOARD_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes each asset may take, uncompressed.
    const CSS_BYTES_MAX: usize = 4 * 1024;
    const JS_BYTES_MAX: usize = 4 * 1024;

    #[test]
    fn assets_keep_their_byte_budgets() {
        assert!(
            CSS.len() <= CSS_BYTES_MAX,
            "site.css is {} bytes",
            CSS.len()
        );
        assert!(JS.len() <= JS_BYTES_MAX, "site.js is {} bytes", JS.len());
        assert!(
            DASHBOARD_JS.len() <= JS_BYTES_MAX,
            "dashboard.js is {} bytes",
            DASHBOARD_JS.len()
        );
    }
}
