//! Secrets out of messages.

/// A database URL without its password, given as `user:password@` or as a `password=`
/// parameter, for messages.
pub fn redact(url: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let mut redacted = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &base[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(parameters) = query.strip_prefix('?') {
        let parameters: Vec<String> = parameters
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        redacted = format!("{redacted}?{}", parameters.join("&"));
    }
    redacted
}
