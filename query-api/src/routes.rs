//! Every `/api` route, once: its method, path, who may call it, and the one function that
//! answers it. The dispatcher authenticates and authorizes from this table before a handler
//! runs, so a handler never forgets to; the authorization tests walk the same table.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use ksa_bus::Bus;
use ksa_edge::ClientAddr;
use ksa_state::{Project, StateStore};
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use crate::admin;
use crate::analytics::Query;
use crate::auth::{self, Caller, Via, policy};
use crate::error::ApiError;
use crate::orders;
use crate::reports::Report;
use crate::{OPENAPI, QueryApi};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login).
    Open,
    /// Any signed-in user; the handler applies finer rules (users, audit, webhook statistics).
    Signed,
    /// Members of the project named by `?project=` or `{slug}`; others get 404.
    Viewer,
    /// Admins of that project (and owners); viewers get 403, others 404.
    Admin,
    /// Owners only.
    Owner,
}

/// A settings section with a route of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Sla,
    Cycle,
    WorkingHours,
    UrgentRules,
    Terminal,
}

impl Part {
    /// The top-level keys of the settings document this part holds.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Part::Sla => &["sla"],
            Part::Cycle => &["cycles", "default_cycle"],
            Part::WorkingHours => &["calendars"],
            Part::UrgentRules => &["urgency_rules"],
            Part::Terminal => &["terminal_groups", "completion_groups", "cancellation_groups"],
        }
    }
}

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Logout,
    Me,
    MyPassword,
    Tokens,
    TokenCreate,
    TokenDelete,
    Users,
    UserCreate,
    UserUpdate,
    Projects,
    ProjectCreate,
    Project,
    ProjectUpdate,
    ProjectDelete,
    WebhookSecret,
    Settings,
    SettingsPut,
    SettingsPart(Part),
    SettingsPartPut(Part),
    Recompute,
    Statuses,
    GroupRename,
    StatusSync,
    OverridePut,
    OverrideDelete,
    Audit,
    WebhookStats,
    Orders,
    OrderKpis,
    OrdersCsv,
    StreamOrders,
    Timeline,
    Analytics(Query),
    Report(Report),
    OpenApi,
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    /// With `{name}` for a path parameter.
    pub path: &'static str,
    pub access: Access,
    pub endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, access: Access, endpoint: Endpoint) -> Route {
    Route { method, path, access, endpoint }
}

use Access::{Admin, Open, Owner, Signed, Viewer};

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    route("POST", "/api/auth/login", Open, Endpoint::Login),
    route("POST", "/api/auth/logout", Signed, Endpoint::Logout),
    route("GET", "/api/me", Signed, Endpoint::Me),
    route("POST", "/api/me/password", Signed, Endpoint::MyPassword),
    route("GET", "/api/tokens", Signed, Endpoint::Tokens),
    route("POST", "/api/tokens", Signed, Endpoint::TokenCreate),
    route("DELETE", "/api/tokens/{id}", Signed, Endpoint::TokenDelete),
    route("GET", "/api/users", Signed, Endpoint::Users),
    route("POST", "/api/users", Signed, Endpoint::UserCreate),
    route("PATCH", "/api/users/{id}", Signed, Endpoint::UserUpdate),
    route("GET", "/api/projects", Signed, Endpoint::Projects),
    route("POST", "/api/projects", Owner, Endpoint::ProjectCreate),
    route("GET", "/api/projects/{slug}", Viewer, Endpoint::Project),
    route("PATCH", "/api/projects/{slug}", Admin, Endpoint::ProjectUpdate),
    route("DELETE", "/api/projects/{slug}", Owner, Endpoint::ProjectDelete),
    route("POST", "/api/projects/{slug}/webhook-secret", Admin, Endpoint::WebhookSecret),
    route("GET", "/api/settings", Admin, Endpoint::Settings),
    route("PUT", "/api/settings", Admin, Endpoint::SettingsPut),
    route("GET", "/api/settings/recompute", Viewer, Endpoint::Recompute),
    route("GET", "/api/settings/sla", Admin, Endpoint::SettingsPart(Part::Sla)),
    route("PUT", "/api/settings/sla", Admin, Endpoint::SettingsPartPut(Part::Sla)),
    route("GET", "/api/settings/cycle", Admin, Endpoint::SettingsPart(Part::Cycle)),
    route("PUT", "/api/settings/cycle", Admin, Endpoint::SettingsPartPut(Part::Cycle)),
    route("GET", "/api/settings/working-hours", Admin, Endpoint::SettingsPart(Part::WorkingHours)),
    route("PUT", "/api/settings/working-hours", Admin, Endpoint::SettingsPartPut(Part::WorkingHours)),
    route("GET", "/api/settings/urgent-rules", Admin, Endpoint::SettingsPart(Part::UrgentRules)),
    route("PUT", "/api/settings/urgent-rules", Admin, Endpoint::SettingsPartPut(Part::UrgentRules)),
    route("GET", "/api/settings/terminal", Admin, Endpoint::SettingsPart(Part::Terminal)),
    route("PUT", "/api/settings/terminal", Admin, Endpoint::SettingsPartPut(Part::Terminal)),
    route("GET", "/api/dicts/statuses", Viewer, Endpoint::Statuses),
    route("PATCH", "/api/dicts/groups/{id}", Admin, Endpoint::GroupRename),
    route("POST", "/api/dicts/statuses/sync", Admin, Endpoint::StatusSync),
    route("PUT", "/api/orders/{id}/override", Admin, Endpoint::OverridePut),
    route("DELETE", "/api/orders/{id}/override", Admin, Endpoint::OverrideDelete),
    route("GET", "/api/audit", Signed, Endpoint::Audit),
    route("GET", "/api/webhooks/stats", Signed, Endpoint::WebhookStats),
    route("GET", "/api/orders", Viewer, Endpoint::Orders),
    route("GET", "/api/orders/kpis", Viewer, Endpoint::OrderKpis),
    route("GET", "/api/orders.csv", Viewer, Endpoint::OrdersCsv),
    route("GET", "/api/stream/orders", Viewer, Endpoint::StreamOrders),
    route("GET", "/api/orders/{id}/timeline", Viewer, Endpoint::Timeline),
    route("GET", "/api/analytics/stages", Viewer, Endpoint::Analytics(Query::Stages)),
    route("GET", "/api/analytics/cycles", Viewer, Endpoint::Analytics(Query::Cycles)),
    route("GET", "/api/analytics/sla", Viewer, Endpoint::Analytics(Query::Sla)),
    route("GET", "/api/analytics/throughput", Viewer, Endpoint::Analytics(Query::Throughput)),
    route("GET", "/api/analytics/cancellations", Viewer, Endpoint::Analytics(Query::Cancellations)),
    route("GET", "/api/reports/custom", Viewer, Endpoint::Report(Report::Custom)),
    route("GET", "/api/reports/productivity", Viewer, Endpoint::Report(Report::Productivity)),
    route("GET", "/api/reports/cancellations", Viewer, Endpoint::Report(Report::Cancellations)),
    route("GET", "/api/reports/success", Viewer, Endpoint::Report(Report::Success)),
    route("GET", "/api/reports/sla", Viewer, Endpoint::Report(Report::Sla)),
    route("GET", "/api/reports/stage-time", Viewer, Endpoint::Report(Report::StageTime)),
    route("GET", "/api/openapi.yaml", Signed, Endpoint::OpenApi),
];

/// A request as the handlers see it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub client: ClientAddr,
    pub body: Bytes,
}

impl Request {
    /// A query parameter, `None` when absent or empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `limit` as a number from 1 to `max` (`default` when absent); 400 naming it otherwise.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.param("limit") {
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::bad("limit", format!("{text:?} is not a number from 1 to {max}"))),
            None => Ok(default),
        }
    }

    /// The body as JSON of type `T`; 400 naming the field when it does not fit.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::bad_body("a JSON body is required"));
        }
        let de = &mut serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let error = ApiError::bad_body(err.into_inner().to_string());
            if path == "." || path == "?" { error } else { error.with_field(path) }
        })
    }
}

/// One call: the request, its caller, its path parameters and the project it names.
pub struct Call<'a, S, B> {
    pub api: &'a Arc<QueryApi<S, B>>,
    pub request: &'a Request,
    pub caller: Option<Caller>,
    pub params: HashMap<&'static str, String>,
    pub project: Option<Project>,
}

impl<S, B> Call<'_, S, B> {
    /// The authenticated caller (every route but login has one).
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| ApiError::unauthorized("log in first"))
    }

    /// The project the route names (Viewer and Admin routes have one).
    pub fn project(&self) -> Result<&Project, ApiError> {
        self.project.as_ref().ok_or_else(|| ApiError::bad("project", "missing: ?project=SLUG"))
    }

    /// A path parameter.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    /// A numeric path parameter; 400 naming it otherwise.
    pub fn id(&self, name: &'static str) -> Result<i64, ApiError> {
        let text = self.param(name);
        text.parse().map_err(|_| ApiError::bad(name, format!("{text:?} is not a number")))
    }
}

/// The `/api` routes, answered from [`ROUTES`].
pub fn routes<S: StateStore, B: Bus>(api: Arc<QueryApi<S, B>>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("api")
        .and(warp::path::full())
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(ksa_edge::client_addr())
        .and(warp::body::stream())
        .then(move |path: warp::path::FullPath, method: Method, query: String, headers: HeaderMap, client: ClientAddr, body| {
            let api = api.clone();
            async move {
                let limit = api.config.max_body_bytes;
                let body = match read_body(body, limit).await {
                    Ok(body) => body,
                    Err(error) => return error.into_response(),
                };
                let query = match parse_query(&query) {
                    Ok(query) => query,
                    Err(error) => return error.into_response(),
                };
                let request = Request { method, path: path.as_str().to_owned(), query, headers, client, body };
                match dispatch(&api, &request).await {
                    Ok(response) => response,
                    Err(error) => error.into_response(),
                }
            }
        })
}

async fn read_body(body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send, limit: usize) -> Result<Bytes, ApiError> {
    match ksa_edge::read_limited(body, limit).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is over {limit} bytes"))),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("the body could not be read: {e}"))),
    }
}

/// The query string as pairs; a parameter given twice is refused (which would count?).
fn parse_query(raw: &str) -> Result<HashMap<String, String>, ApiError> {
    let mut query = HashMap::new();
    for (name, value) in url_pairs(raw) {
        if query.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad(name, "given more than once"));
        }
    }
    Ok(query)
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (ksa_edge::percent_decode(name), ksa_edge::percent_decode(value))
        })
        .collect()
}

/// The route for a method and path: `Ok` with its parameters, or the error to answer (404, or
/// 405 when the path exists with other methods).
pub fn find(method: &str, path: &str) -> Result<(&'static Route, HashMap<&'static str, String>), ApiError> {
    let mut methods = Vec::new();
    for route in ROUTES {
        if let Some(params) = matches(route.path, path) {
            if route.method == method {
                return Ok((route, params));
            }
            methods.push(route.method);
        }
    }
    if methods.is_empty() {
        Err(ApiError::not_found("no such endpoint; see /api/openapi.yaml"))
    } else {
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this endpoint takes {}; see /api/openapi.yaml", methods.join(", ")),
        ))
    }
}

fn matches(pattern: &'static str, path: &str) -> Option<HashMap<&'static str, String>> {
    let mut params = HashMap::new();
    let mut wanted = pattern.split('/');
    let mut given = path.trim_end_matches('/').split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.insert(&w[1..w.len() - 1], ksa_edge::percent_decode(g));
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

async fn dispatch<S: StateStore, B: Bus>(api: &Arc<QueryApi<S, B>>, request: &Request) -> Result<Response, ApiError> {
    let (route, params) = find(request.method.as_str(), &request.path)?;
    let caller = match route.access {
        Access::Open => None,
        _ => Some(auth::authenticate(&api.state, &api.config.auth, &request.headers, request.client).await?),
    };
    // A browser's cookie rides along with any request a page of another site makes: writes
    // authenticated by it must come from our own pages. Logins too (login CSRF).
    let writes = !matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let by_cookie = caller.as_ref().is_none_or(|c| c.via == Via::Session);
    if writes && by_cookie && auth::cross_origin(&request.headers) {
        return Err(ApiError::forbidden("cross-site request refused: use the application's own pages, or an API token"));
    }
    let project = match route.access {
        Access::Viewer | Access::Admin => {
            let caller = caller.as_ref().ok_or_else(|| ApiError::unauthorized("log in first"))?;
            let slug = params.get("slug").map(String::as_str).or_else(|| request.param("project"));
            let slug = slug.ok_or_else(|| ApiError::bad("project", "missing: ?project=SLUG"))?;
            let invisible = || ApiError::not_found(format!("no project `{slug}`"));
            let project = api.state.project_by_slug(slug).await?.ok_or_else(invisible)?;
            if !policy::sees(&caller.user, project.id) {
                return Err(invisible());
            }
            if route.access == Access::Admin && !policy::administers(&caller.user, project.id) {
                return Err(ApiError::forbidden(format!("only an admin of `{slug}` may do this")));
            }
            Some(project)
        }
        Access::Owner => {
            if !caller.as_ref().is_some_and(|c| c.user.is_owner) {
                return Err(ApiError::forbidden("only an owner may do this"));
            }
            match params.get("slug") {
                Some(slug) => {
                    Some(api.state.project_by_slug(slug).await?.ok_or_else(|| ApiError::not_found(format!("no project `{slug}`")))?)
                }
                None => None,
            }
        }
        Access::Open | Access::Signed => None,
    };
    let call = Call { api, request, caller, params, project };
    match route.endpoint {
        Endpoint::Login => admin::session::login(&call).await,
        Endpoint::Logout => admin::session::logout(&call).await,
        Endpoint::Me => admin::session::me(&call).await,
        Endpoint::MyPassword => admin::session::change_password(&call).await,
        Endpoint::Tokens => admin::tokens::list(&call).await,
        Endpoint::TokenCreate => admin::tokens::create(&call).await,
        Endpoint::TokenDelete => admin::tokens::delete(&call).await,
        Endpoint::Users => admin::users::list(&call).await,
        Endpoint::UserCreate => admin::users::create(&call).await,
        Endpoint::UserUpdate => admin::users::update(&call).await,
        Endpoint::Projects => admin::projects::list(&call).await,
        Endpoint::ProjectCreate => admin::projects::create(&call).await,
        Endpoint::Project => admin::projects::get(&call).await,
        Endpoint::ProjectUpdate => admin::projects::update(&call).await,
        Endpoint::ProjectDelete => admin::projects::delete(&call).await,
        Endpoint::WebhookSecret => admin::projects::rotate_secret_route(&call).await,
        Endpoint::Settings => admin::settings::get(&call, None).await,
        Endpoint::SettingsPut => admin::settings::put(&call, None).await,
        Endpoint::SettingsPart(part) => admin::settings::get(&call, Some(part)).await,
        Endpoint::SettingsPartPut(part) => admin::settings::put(&call, Some(part)).await,
        Endpoint::Recompute => admin::settings::recompute(&call).await,
        Endpoint::Statuses => admin::dicts::statuses(&call).await,
        Endpoint::GroupRename => admin::dicts::rename_group(&call).await,
        Endpoint::StatusSync => admin::dicts::sync(&call).await,
        Endpoint::OverridePut => admin::overrides::put(&call).await,
        Endpoint::OverrideDelete => admin::overrides::delete(&call).await,
        Endpoint::Audit => admin::audit::list(&call).await,
        Endpoint::WebhookStats => admin::webhooks::stats(&call).await,
        Endpoint::Orders => orders::list(&call).await,
        Endpoint::OrderKpis => orders::kpis(&call).await,
        Endpoint::OrdersCsv => orders::csv(&call).await,
        Endpoint::StreamOrders => crate::live::stream::open(&call).await,
        Endpoint::Timeline => orders::timeline(&call).await,
        Endpoint::Analytics(query) => crate::analytics::answer(&call, query).await,
        Endpoint::Report(report) => crate::reports::answer(&call, report).await,
        Endpoint::OpenApi => Ok(warp::reply::with_header(OPENAPI, "content-type", "application/yaml").into_response()),
    }
}

/// A JSON answer with a status.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// `body` as JSON, for an answer built once and sent to several callers ([`ok_bytes`]).
pub fn json_bytes<T: serde::Serialize>(body: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| ApiError::internal(format!("an answer could not be written: {e}")))
}

/// 200 with a JSON body already written.
pub fn ok_bytes(body: Bytes) -> Response {
    warp::reply::with_header(warp::http::Response::new(body), "content-type", "application/json").into_response()
}

/// 200 with a JSON body.
pub fn ok(body: &serde_json::Value) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route_with_parameters() {
        let (route, params) = find("GET", "/api/orders/23196/timeline").unwrap();
        assert_eq!(route.endpoint, Endpoint::Timeline);
        assert_eq!(params["id"], "23196");
        assert_eq!(find("PATCH", "/api/projects/shop").unwrap().1["slug"], "shop");
        assert_eq!(find("GET", "/api/settings/sla").unwrap().0.endpoint, Endpoint::SettingsPart(Part::Sla));
        assert_eq!(find("POST", "/api/orders").unwrap_err().status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(find("GET", "/api/nothing").unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(find("GET", "/api/orders//timeline").unwrap_err().status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn every_route_is_listed_once_and_described_in_the_openapi_document_with_its_role() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(seen.insert((route.method, route.path)), "{} {} is listed twice", route.method, route.path);
            let block = OPENAPI
                .split("\n  /")
                .find(|block| block.starts_with(&format!("{}:", route.path.trim_start_matches('/'))))
                .unwrap_or_else(|| panic!("{} is not described in docs/openapi.yaml", route.path));
            let method = block
                .split_once(&format!("\n    {}:", route.method.to_ascii_lowercase()))
                .unwrap_or_else(|| panic!("{} {} is not described in docs/openapi.yaml", route.method, route.path))
                .1;
            let role = match route.access {
                Access::Open => "open",
                Access::Signed => "signed",
                Access::Viewer => "viewer",
                Access::Admin => "admin",
                Access::Owner => "owner",
            };
            let head: Vec<&str> = method.lines().take(4).collect();
            assert!(
                head.iter().any(|line| line.trim() == format!("x-required-role: {role}")),
                "{} {} must say `x-required-role: {role}` in docs/openapi.yaml",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn queries_are_decoded_and_repeats_refused() {
        let q = parse_query("project=shop&q=10%2B1&as_of=2026-01-01T00:00:00%2B02:00").unwrap();
        assert_eq!(q["q"], "10+1");
        assert_eq!(q["as_of"], "2026-01-01T00:00:00+02:00");
        assert!(parse_query("limit=1&limit=2").is_err());
    }
}
