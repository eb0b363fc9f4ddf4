//! `keycrm-analytics query-api`: the API behind a login, over the state database; overrides go
//! onto the bus for the processors.

use std::net::SocketAddr;
use std::sync::Arc;

use ksa_bus::Bus;
use ksa_query_api::QueryApi;
use ksa_state::StateStore;
use tokio::sync::watch;
use warp::Filter;

use super::connect::WithBus;
use super::health;
use crate::config::Config;

pub(super) struct QueryApiService<'a, L> {
    pub config: &'a Config,
    pub listen: String,
    pub shutdown: watch::Receiver<bool>,
    pub on_listening: L,
}

impl<L: FnOnce(SocketAddr) + Send> WithBus for QueryApiService<'_, L> {
    async fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> anyhow::Result<()> {
        let QueryApiService { config, listen, shutdown, on_listening } = self;
        crate::access::ensure_owner(&state, config).await?;
        let api = QueryApi::new(state.clone(), bus, crate::enrich::cipher(config)?, crate::access::api_config(config, &listen)?);
        api.start_live(shutdown.clone());
        if let Some(engine) = crate::apart::open_analytics(config).await? {
            let _ = api.analytics.set(engine);
        }
        let routes = ksa_query_api::routes(api)
            .or(health::route("query-api", Arc::new(|| serde_json::Value::Null)))
            .unify()
            .or(health::ready_route(state))
            .unify()
            .or(ksa_query_api::ui::routes(config.server.ui()))
            .unify()
            .recover(ksa_query_api::recover)
            .unify();
        let server = health::serve(config, &listen, routes, shutdown, on_listening).await?;
        let _ = server.await;
        tracing::info!("query-api stopped");
        Ok(())
    }
}
