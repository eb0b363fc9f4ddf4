//! Data that crosses a boundary of the system: KeyCRM webhook bodies and API objects, the
//! normalized status event made from them, and the project settings document.
//!
//! Parsing here is lenient where KeyCRM is loose (numbers as strings, `[]` for empty objects,
//! two timestamp formats, unknown fields) and strict where the product cannot go on without a
//! value: such errors name the field.

pub mod bus;
pub mod derived;
pub mod event;
pub mod facts;
pub mod kept;
pub mod keycrm;
pub mod loose;
pub mod row;
pub mod settings;
pub mod time;

pub use event::{DedupKey, EventSource, StatusEvent};
pub use kept::kept_payload;
pub use keycrm::{Marketing, OrderDetails, OrderLine, WebhookError, WebhookOutcome, parse_order_details, parse_webhook};
pub use settings::{ProjectSettings, SettingsError};
pub use time::Timestamp;
