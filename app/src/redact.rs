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

/// `text` with every e-mail address and phone number replaced (`[email]`, `[phone]`): what log
/// lines go through, wherever a customer's contact could have slipped into a message.
///
/// An e-mail is `local@domain.tld`. A phone is a `+` followed by 10 to 15 digits, or a
/// Ukrainian number without it (`0XX XXX XX XX`, or `380` and 9 digits), its digits grouped by
/// spaces, dashes or parentheses. Dates, clock times, ids and offsets are not phones: they do not
/// start so, or carry `:` or `.` between their digits.
pub fn mask_personal(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.bytes().any(|b| b == b'@' || b.is_ascii_digit()) {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let found = match bytes[i] {
            b'@' => email_around(bytes, i).map(|(start, end)| (start, end, "[email]")),
            b'+' | b'0'..=b'9' => phone_at(bytes, i).map(|end| (i, end, "[phone]")),
            _ => None,
        };
        match found {
            Some((start, end, mark)) if start >= copied => {
                out.push_str(&text[copied..start]);
                out.push_str(mark);
                copied = end;
                i = end;
            }
            _ => {
                // Skip the rest of a number or word, so a phone is never found inside one.
                let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
                if word(bytes[i]) {
                    while i < bytes.len() && word(bytes[i]) {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// The e-mail address whose `@` is at `at`, as a byte range.
fn email_around(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    let mut start = at;
    while start > 0 && local(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < bytes.len() && domain(bytes[end]) {
        end += 1;
    }
    // A trailing dot ends the sentence, not the domain.
    while end > at + 1 && bytes[end - 1] == b'.' {
        end -= 1;
    }
    let host = &bytes[at + 1..end];
    let dot = host.iter().rposition(|b| *b == b'.')?;
    (start < at && dot > 0 && host.len() - dot > 2).then_some((start, end))
}

/// The end of the phone number that starts at `start`, if one does.
fn phone_at(bytes: &[u8], start: usize) -> Option<usize> {
    let before = |back: usize| start.checked_sub(back).map(|i| bytes[i]);
    if before(1).is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+')) {
        return None;
    }
    // The digits after a decimal point or a colon belong to a number or a time.
    if before(1).is_some_and(|b| matches!(b, b'.' | b':' | b',')) && before(2).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let plus = bytes[start] == b'+';
    let mut digits = Vec::with_capacity(16);
    let mut i = start + usize::from(plus);
    let mut last_digit_end = i;
    while i < bytes.len() && digits.len() <= 15 {
        match bytes[i] {
            b @ b'0'..=b'9' => {
                digits.push(b);
                i += 1;
                last_digit_end = i;
            }
            // Up to three separators between groups of digits (`) `, ` (`, ` - `).
            b' ' | b'-' | b'(' | b')' => {
                let mut next = i + 1;
                while next < i + 3 && bytes.get(next).is_some_and(|b| matches!(b, b' ' | b'-' | b'(' | b')')) {
                    next += 1;
                }
                if !bytes.get(next).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                i = next;
            }
            _ => break,
        }
    }
    let end = last_digit_end;
    // A number glued to letters, or followed by `:`/`.` and a digit (a time, a decimal), is not a phone.
    let after = bytes.get(end).copied();
    if after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    if matches!(after, Some(b':' | b'.')) && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.len();
    let phone =
        if plus { (10..=15).contains(&n) } else { (digits.first() == Some(&b'0') && n == 10) || (digits.starts_with(b"380") && n == 12) };
    phone.then_some(end)
}

/// Log output with phones and e-mails masked ([`mask_personal`]): wraps the writer of the log
/// formatter, which writes each event as one line.
pub struct MaskedLog<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for MaskedLog<M> {
    type Writer = Masked<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(self.0.make_writer())
    }
}

/// One log write, masked.
pub struct Masked<W>(W);

impl<W: std::io::Write> std::io::Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask_personal(text).as_bytes())?,
            Err(_) => self.0.write_all(mask_personal(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_emails_are_masked_in_any_spelling() {
        for (text, masked) in [
            ("call +380501234567 now", "call [phone] now"),
            ("Тел. +38 (050) 123-45-67.", "Тел. [phone]."),
            ("тел 050 123 45 67, Київ", "тел [phone], Київ"),
            ("0501234567", "[phone]"),
            ("380501234567;", "[phone];"),
            ("ivan.petrenko+shop@mail.example.com.", "[email]."),
            ("a@b.ua and x_y@sub.example.org", "[email] and [email]"),
            ("(050) 123 - 45 - 67", "([phone]"),
        ] {
            assert_eq!(mask_personal(text), masked, "{text}");
        }
    }

    #[test]
    fn dates_times_ids_offsets_and_urls_stay() {
        for text in [
            "2026-01-29T18:53:35.000000Z",
            "2026-01-29 18:53:35",
            "order 23196 of project 3 at offset 1042,-1,87,3@1767225600000000",
            "took 0.0123456789 s",
            "listening on http://127.0.0.1:8080",
            "user@localhost",
            "postgres://user@127.0.0.1:5432/test",
            "id ab0501234567",
            "1767225600000000 µs",
        ] {
            assert_eq!(mask_personal(text), text, "{text}");
        }
    }
}
