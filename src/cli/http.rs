//! The command-line client's HTTP/1.1: one blocking request per connection on `std::net`
//! (`Connection: close`), the response framed by the load tool's parser
//! (`bench::client::ResponseReader`, Content-Length or chunked). A non-2xx answer becomes
//! [`CliError::Server`] with the `error`/`message` of the server's JSON error body.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value as Json;

use super::CliError;
use crate::bench::client::ResponseReader;

/// Port used when `--host` names no port.
pub const DEFAULT_PORT: u16 = 9002;
/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer, on top of any wait the request asks for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer; also the largest response head accepted.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Where requests go and with which token.
#[derive(Debug)]
pub struct Client {
    /// `host:port` as the user wrote it (without `http://`), for messages and `Host:`.
    host: String,
    token: Option<String>,
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(host: &str, token: Option<String>) -> Client {
        let host = host.trim();
        let host = host
            .strip_prefix("http://")
            .unwrap_or(host)
            .trim_end_matches('/')
            .to_string();
        Client { host, token }
    }

    fn addrs(&self) -> Result<Vec<SocketAddr>, CliError> {
        let resolved = match self.host.to_socket_addrs() {
            Ok(a) => Ok(a.collect::<Vec<_>>()),
            // No port given: the API's default.
            Err(e) if !self.host.contains(':') => (self.host.as_str(), DEFAULT_PORT)
                .to_socket_addrs()
                .map(|a| a.collect())
                .map_err(|_| e),
            Err(e) => Err(e),
        };
        match resolved {
            Ok(a) if !a.is_empty() => Ok(a),
            Ok(_) => Err(self.connect_error("the name resolves to no address".into())),
            Err(e) => Err(self.connect_error(e.to_string())),
        }
    }

    fn connect_error(&self, reason: String) -> CliError {
        CliError::Connect {
            host: self.host.clone(),
            reason,
        }
    }

    fn connect(&self) -> Result<TcpStream, CliError> {
        let mut last = String::new();
        for addr in self.addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
        }
        Err(self.connect_error(last))
    }

    /// Sends one request and returns the response whatever its status. `wait` is how long
    /// the request itself asks the server to wait (long polls); the answer may take that
    /// long plus [`ANSWER_TIMEOUT`].
    pub fn send(
        &self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        wait: Duration,
    ) -> Result<Reply, CliError> {
        let mut stream = self.connect()?;
        let lost = |e: std::io::Error| CliError::Protocol(format!("connection to {} failed: {e}", self.host));
        stream.set_read_timeout(Some(ANSWER_TIMEOUT + wait)).map_err(lost)?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(lost)?;
        let _ = stream.set_nodelay(true);

        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: flo-cli/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.host,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).map_err(lost)?;

        let mut reader = ResponseReader::with_capacity(READ_BUF_BYTES);
        reader.keep_bodies();
        loop {
            match reader.next_response() {
                Ok(Some(meta)) => {
                    return Ok(Reply {
                        status: meta.status,
                        body: reader.last_body().to_vec(),
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(CliError::Protocol(format!("bad response from {}: {}", self.host, e.0))),
            }
            if reader.is_full() {
                return Err(CliError::Protocol(format!(
                    "response head from {} is too large",
                    self.host
                )));
            }
            match reader.read_from_blocking(&mut stream) {
                Ok(0) => {
                    return Err(CliError::Protocol(format!(
                        "{} closed the connection before answering",
                        self.host
                    )))
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(CliError::Protocol(format!("{} did not answer in time", self.host)))
                }
                Err(e) => return Err(lost(e)),
            }
        }
    }

    /// Sends a request and parses a 2xx JSON answer; anything else is an error.
    pub fn call(
        &self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        wait: Duration,
    ) -> Result<Json, CliError> {
        let reply = self.send(method, target, content_type, body, wait)?;
        if !(200..300).contains(&reply.status) {
            return Err(server_error(reply));
        }
        if reply.body.is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            CliError::Protocol(format!(
                "the answer from {} is not JSON ({e}): {}",
                self.host,
                String::from_utf8_lossy(&reply.body)
            ))
        })
    }

    /// GET, parsed.
    pub fn get(&self, target: &str) -> Result<Json, CliError> {
        self.call("GET", target, None, b"", Duration::ZERO)
    }

    /// GET that asks the server to wait up to `wait`.
    pub fn get_waiting(&self, target: &str, wait: Duration) -> Result<Json, CliError> {
        self.call("GET", target, None, b"", wait)
    }

    /// A JSON body with `method`, parsed.
    pub fn send_json(&self, method: &str, target: &str, body: &Json, wait: Duration) -> Result<Json, CliError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CliError::Protocol(e.to_string()))?;
        self.call(method, target, Some("application/json"), &bytes, wait)
    }

    /// POST with a JSON body, parsed.
    pub fn post(&self, target: &str, body: &Json) -> Result<Json, CliError> {
        self.send_json("POST", target, body, Duration::ZERO)
    }
}

/// The error a non-2xx answer stands for: the server's `error` code and `message` when the
/// body is the API's JSON error, else the status and body text.
fn server_error(reply: Reply) -> CliError {
    let parsed: Option<Json> = serde_json::from_slice(&reply.body).ok();
    match parsed {
        Some(body) if body.get("error").is_some_and(Json::is_string) => CliError::Server {
            status: reply.status,
            code: body["error"].as_str().unwrap_or_default().to_string(),
            message: body
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            body,
        },
        _ => CliError::Server {
            status: reply.status,
            code: format!("http_{}", reply.status),
            message: String::from_utf8_lossy(&reply.body).trim().to_string(),
            body: Json::Null,
        },
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for path segments and
/// query values).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&…` with the values encoded; parameters whose value is `None` are left out.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut out = path.to_string();
    let mut sep = '?';
    for (k, v) in params {
        if let Some(v) = v {
            out.push(sep);
            out.push_str(k);
            out.push('=');
            out.push_str(&encode(v));
            sep = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_bytes() {
        assert_eq!(encode("a/b c%é"), "a%2Fb%20c%25%C3%A9");
        assert_eq!(encode("user:1"), "user%3A1");
        assert_eq!(
            with_query("/x", &[("a", Some("1".into())), ("b", None), ("c", Some("&".into()))]),
            "/x?a=1&c=%26"
        );
    }

    #[test]
    fn host_prefix_is_dropped() {
        assert_eq!(Client::new("http://127.0.0.1:9/", None).host, "127.0.0.1:9");
    }
}
