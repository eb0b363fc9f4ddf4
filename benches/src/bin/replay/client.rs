//! The replay's HTTP/1.1 client: one keep-alive connection that posts a JSON body and reads the
//! whole answer. The webhooks' sender is the load, not the product, and it shares the machine's
//! two cores with ingest: a general client (connection pool, URL and header maps per request)
//! spent about as much CPU per webhook as ingest itself (BENCHMARKS.md).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where the webhooks go: `http://host:port/path?query`.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`, as connected to and sent in `Host`.
    authority: String,
    /// The path and query, as sent in the request line.
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Target { authority: authority.to_owned(), path: path.to_owned() })
    }
}

/// A status and body read off the connection.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection; it reconnects after the server closes it or an error.
pub struct Connection {
    target: Target,
    stream: Option<BufReader<TcpStream>>,
    request: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    pub fn new(target: Target, timeout: Duration) -> Connection {
        Connection { target, stream: None, request: Vec::with_capacity(4096), timeout }
    }

    /// Posts `body` as `application/json` and reads the answer. After an error the connection is
    /// dropped, and the next post opens a new one.
    pub async fn post_json(&mut self, body: &[u8]) -> io::Result<Answer> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => {
                self.stream = None;
                Err(error)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {:?}", self.timeout)))
            }
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> io::Result<Answer> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.target.path,
            self.target.authority,
            body.len()
        )?;
        self.request.extend_from_slice(body);
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.target.authority).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(BufReader::with_capacity(16 * 1024, stream));
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.get_mut().write_all(&self.request).await?;
        let (answer, keep_alive) = read_answer(stream).await?;
        if !keep_alive {
            self.stream = None;
        }
        Ok(answer)
    }
}

/// Reads one HTTP/1.1 answer: its status, headers and body (by `Content-Length` or chunked);
/// also whether the connection stays open.
async fn read_answer<R: AsyncBufReadExt + Unpin>(stream: &mut R) -> io::Result<(Answer, bool)> {
    let mut line = String::new();
    read_line(stream, &mut line).await?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("not an HTTP/1.x status line: {line:?}")))?;
    let mut keep_alive = line.starts_with("HTTP/1.1");
    let mut length = None;
    let mut chunked = false;
    loop {
        read_line(stream, &mut line).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { return Err(invalid(format!("not a header: {line:?}"))) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| invalid(format!("Content-Length: {value:?}")))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            read_line(stream, &mut line).await?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| invalid(format!("chunk size: {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    read_line(stream, &mut line).await?;
                    if line.is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..]).await?;
            read_line(stream, &mut line).await?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
    } else {
        // Neither: the body runs to the end of the connection.
        stream.read_to_end(&mut body).await?;
        keep_alive = false;
    }
    Ok((Answer { status, body }, keep_alive))
}

/// One line without its `\r\n`; an error at the end of the stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(stream: &mut R, line: &mut String) -> io::Result<()> {
    line.clear();
    if stream.read_line(line).await? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(raw: &str) -> io::Result<(Answer, bool)> {
        read_answer(&mut BufReader::new(raw.as_bytes())).await
    }

    #[tokio::test]
    async fn answers_are_read_by_length_chunks_or_to_the_end() {
        let (sized, keep) = answer("HTTP/1.1 202 Accepted\r\ncontent-length: 19\r\n\r\n{\"status\":\"stored\"}").await.unwrap();
        assert_eq!((sized.status, sized.body.as_slice(), keep), (202, &b"{\"status\":\"stored\"}"[..], true));
        let (chunked, _) =
            answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").await.unwrap();
        assert_eq!(chunked.body, b"abcde");
        let (closing, keep) = answer("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy").await.unwrap();
        assert_eq!((closing.status, closing.body.as_slice(), keep), (503, &b"busy"[..], false));
        assert!(answer("SSH-2.0\r\n\r\n").await.is_err());
        assert!(answer("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort").await.is_err());
    }

    #[test]
    fn targets_keep_path_and_query() {
        let target = Target::parse("http://127.0.0.1:8080/webhooks/keycrm/a?token=t").unwrap();
        assert_eq!((target.authority.as_str(), target.path.as_str()), ("127.0.0.1:8080", "/webhooks/keycrm/a?token=t"));
        assert_eq!(Target::parse("http://localhost:1").unwrap().path, "/");
        assert!(Target::parse("https://x/").is_err());
    }
}
