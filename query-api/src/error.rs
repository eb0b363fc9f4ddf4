//! The one error shape of the API: `{"error": CODE, "message": TEXT, "field": NAME?,
//! "errors": [{"field", "message"}]?}`, with a status that means what it says.

use ksa_state::StateError;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// One invalid field of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every invalid field (422).
    pub errors: Vec<FieldError>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, errors: Vec::new(), retry_after: None }
    }

    /// 400: a query parameter or body field cannot be used.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message) }
    }

    /// 400: the body is not the JSON the endpoint takes.
    pub fn bad_body(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 500: something on our side is broken (the message is for the operator as much as the
    /// caller).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::CONFLICT, "conflict", message) }
    }

    /// 422: a document with every invalid field named.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let message = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError { errors, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", message) }
    }

    pub fn too_many(retry_after: u64, message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(retry_after.max(1)), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message) }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        if !self.errors.is_empty() {
            body["errors"] = self.errors.iter().map(|e| json!({ "field": e.field, "message": e.message })).collect();
        }
        body
    }

    pub fn into_response(self) -> Response {
        let mut response = warp::reply::with_status(warp::reply::json(&self.body()), self.status).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        response
    }
}

impl From<StateError> for ApiError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::SlugTaken(slug) => ApiError::conflict("slug", format!("a project `{slug}` already exists")),
            StateError::LoginTaken(login) => ApiError::conflict("login", format!("a user `{login}` already exists")),
            StateError::StaleRevision { current, .. } => ApiError {
                field: Some("If-Match".into()),
                ..ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "stale_revision",
                    format!(
                        "the settings were saved by someone else meanwhile (revision {current} now); reload and apply your change again"
                    ),
                )
            },
            other => {
                tracing::warn!(error = %other, "state access failed");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "state cannot be read; retry later")
                }
            }
        }
    }
}

/// Turns unmatched routes into JSON 404s, so every error body is JSON.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::not_found("no such endpoint; see /api/openapi.yaml")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method; see /api/openapi.yaml",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is too large")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "the query string cannot be read")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the request cannot be read")
    };
    Ok(error.into_response())
}
