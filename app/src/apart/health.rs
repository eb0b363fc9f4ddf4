//! `GET /healthz` (the process answers) and `GET /readyz` (and its state database answers) of
//! every service, the server they are served by, and `keycrm-analytics probe`, which container
//! health checks run (the image has no curl).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ksa_state::AdminStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;

/// `GET /healthz`: 200 with `{"status": "ok", "service": …}` and whatever `detail` adds.
pub(crate) fn route(
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

/// `GET /readyz`: 200 when the state database answers, 503 otherwise.
pub(crate) fn ready_route<S: AdminStore>(state: S) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("readyz").and(warp::get()).then(move || {
        let state = state.clone();
        async move {
            if ksa_query_api::ready(&state).await {
                warp::reply::json(&json!({"status": "ready"})).into_response()
            } else {
                let body = json!({"status": "unavailable", "message": "the state database does not answer"});
                warp::reply::with_status(warp::reply::json(&body), warp::http::StatusCode::SERVICE_UNAVAILABLE).into_response()
            }
        }
    })
}

/// Binds `listen`, tells `on_listening`, and serves `routes` (with the limits of
/// `server.*`) until `shutdown` turns true.
pub(crate) async fn serve<F>(
    config: &Config,
    listen: &str,
    routes: F,
    shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
{
    let limits = config.server.limits()?;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut stop = shutdown;
    let server = tokio::spawn(ksa_edge::serve(listener, routes, limits, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
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
