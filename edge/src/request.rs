//! Reading what a request carries: its body up to a limit, and percent-encoded text.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// Reads the body, giving up (`None`) as soon as it exceeds `limit` bytes.
pub async fn read_limited(
    body: impl Stream<Item = Result<impl Buf, warp::Error>> + Send,
    limit: usize,
) -> Result<Option<Bytes>, warp::Error> {
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buffer.len() + chunk.remaining() > limit {
            return Ok(None);
        }
        buffer.put(chunk);
    }
    Ok(Some(buffer.freeze()))
}

/// `%XX` escapes decoded and `+` as a space, as in a query string; a malformed escape is kept
/// as it was written.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_malformed_ones_kept() {
        assert_eq!(percent_decode("ab%2Fc+d"), "ab/c d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%D0%BF"), "п");
    }
}
