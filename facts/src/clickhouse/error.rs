//! Which ClickHouse failures are worth a retry.

use clickhouse::error::Error;

use crate::FactError;

/// Server error codes that say "not now" rather than "not this": too many parts, memory,
/// concurrency and timeout limits, a read-only table while the server starts or stops.
const RETRYABLE_CODES: &[u32] = &[159, 164, 202, 203, 209, 210, 241, 242, 252, 425];

/// Sorts a client error into [`FactError::Unavailable`] (retry later) or
/// [`FactError::Rejected`] (a person must look).
pub(crate) fn classify(url: String, statement: &str, source: Error) -> FactError {
    let retryable = match &source {
        Error::Network(_) | Error::TimedOut => true,
        Error::BadResponse(text) => server_code(text).is_none_or(|code| RETRYABLE_CODES.contains(&code)),
        _ => false,
    };
    if retryable { FactError::Unavailable { url, source } } else { FactError::Rejected { url, statement: statement.to_owned(), source } }
}

/// The `Code: NNN` of a server exception, if the response carries one. A response without a
/// code (a proxy's 502, a server shutting down) counts as unavailable.
pub(crate) fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_are_read_from_the_exception_text() {
        assert_eq!(server_code("Code: 252, e.displayText() = DB::Exception: Too many parts"), Some(252));
        assert_eq!(server_code("bad gateway"), None);
    }

    #[test]
    fn too_many_parts_is_retried_and_a_syntax_error_is_not() {
        let busy = classify("u".into(), "INSERT", Error::BadResponse("Code: 252, Too many parts".into()));
        assert!(busy.is_retryable());
        let syntax = classify("u".into(), "INSERT", Error::BadResponse("Code: 62, Syntax error".into()));
        assert!(!syntax.is_retryable());
    }
}
