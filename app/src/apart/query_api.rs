//! `keycrm-analytics query-api`: the REST reads over the state database.

use std::net::SocketAddr;
use std::sync::Arc;

use ksa_query_api::QueryApi;
use tokio::sync::watch;
use warp::Filter;

use super::health;
use crate::config::Config;
use crate::stores::open_state;

pub(super) async fn run(
    config: &Config,
    listen: &str,
    shutdown: watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    crate::with_state!(open_state(config).await?, state => {
        let routes = ksa_query_api::routes(QueryApi::new(state))
            .or(health::route("query-api", Arc::new(|| serde_json::Value::Null)))
            .unify()
            .recover(ksa_query_api::not_found)
            .unify();
        let server = health::serve(listen, routes, shutdown, on_listening).await?;
        let _ = server.await;
    });
    tracing::info!("query-api stopped");
    Ok(())
}
