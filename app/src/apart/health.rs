//! `GET /healthz` of every service run apart, and `keycrm-analytics probe`, which container
//! health checks run (the image has no curl).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::reply::Response;
use warp::{Filter, Reply};

/// `GET /healthz`: 200 with `{"status": "ok", "service": …}` and whatever `detail` adds.
pub(super) fn route(
    service: &'static str,
    detail: Arc<dyn Fn() -> Value + Send + Sync>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("healthz").and(warp::get()).map(move || {
        let mut body = json!({"status": "ok", "service": service});
        if let (Some(body), Value::Object(more)) = (body.as_object_mut(), detail()) {
            body.extend(more);
        }
        warp::reply::json(&body).into_response()
    })
}

/// Binds `listen`, tells `on_listening`, and serves `routes` until `shutdown` turns true.
pub(super) async fn serve<F>(
    listen: &str,
    routes: F,
    mut shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .run(),
    );
    tracing::info!(%addr, "listening");
    on_listening(addr);
    Ok(server)
}

/// Exit 0 when `url` answers 2xx within five seconds, 1 otherwise (with the reason on stderr).
pub fn probe(url: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
            Ok(response) => {
                eprintln!("{url}: HTTP {}", response.status());
                Ok(ExitCode::FAILURE)
            }
            Err(err) => {
                eprintln!("{url}: {err}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
