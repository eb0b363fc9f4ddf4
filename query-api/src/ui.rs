//! The web UI: static files from `web/`, embedded in the binary at build time, or read from a
//! folder (`server.ui_dir`, for working on the UI without rebuilding). A path that names no
//! file and has no extension is a page of the UI: it gets `index.html`, whose script reads the
//! page from the URL.

use std::path::PathBuf;

use warp::Filter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// Where the UI's files come from.
#[derive(Clone, Debug, Default)]
pub enum UiSource {
    /// The files built into the binary.
    #[default]
    Embedded,
    /// A folder, read on every request.
    Folder(PathBuf),
}

/// `GET` of every path that is not `/api`, `/webhooks` or a health check.
pub fn routes(source: UiSource) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    // The method is checked inside: `warp::get()` would turn a POST to a mistyped address into
    // a 405 instead of the 404 it is.
    warp::method().and(warp::path::full()).and_then(move |method: warp::http::Method, path: warp::path::FullPath| {
        let source = source.clone();
        async move {
            let path = path.as_str().trim_start_matches('/');
            let api = path.starts_with("api/") || path == "api" || path.starts_with("webhooks/");
            if api || method != warp::http::Method::GET {
                return Err(warp::reject::not_found());
            }
            let wanted = if path.is_empty() { "index.html" } else { path };
            match file(&source, wanted).or_else(|| page(path).then(|| file(&source, "index.html")).flatten()) {
                Some((name, bytes)) => Ok(answer(&name, bytes)),
                None => Err(warp::reject::not_found()),
            }
        }
    })
}

/// A path without an extension, of safe characters: a page of the single-page UI.
fn page(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or("").contains('.') && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b))
}

fn file(source: &UiSource, path: &str) -> Option<(String, Vec<u8>)> {
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    match source {
        UiSource::Embedded => FILES.iter().find(|(name, _)| *name == path).map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec())),
        UiSource::Folder(dir) => std::fs::read(dir.join(path)).ok().map(|bytes| (path.to_owned(), bytes)),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn answer(name: &str, bytes: Vec<u8>) -> Response {
    let mut response = warp::reply::with_status(bytes, StatusCode::OK).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type(name)));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_paths_without_extensions_and_nothing_climbs_out() {
        assert!(page("dashboard") && page("projects/shop/settings") && page(""));
        assert!(!page("app.js") && !page("a/../b"));
        assert!(file(&UiSource::Folder(PathBuf::from("/etc")), "../passwd").is_none());
        assert!(file(&UiSource::Folder(PathBuf::from("/")), "etc//passwd").is_none());
    }
}
