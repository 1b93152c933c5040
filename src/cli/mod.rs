//! The command-line client: `flo kv|queue|stream|ts|ns|cluster|status` talk to a running
//! server over its HTTP/1.1 JSON API (`shared/spec/API.md`), so the binary that serves is also
//! the tool to use it.
//!
//! Layout: this module holds the options every client command shares ([`ClientOpts`]), the
//! error type and exit codes ([`CliError`]), and the context a command runs with ([`Ctx`]);
//! `http` is the blocking HTTP client, `input` reads values (`text`, `@file`, stdin), `output`
//! prints (text tables or JSON), and there is one file per primitive: `kv`, `queue`,
//! `stream`, `ts`, and `admin` (namespaces, cluster, status).
//!
//! Exit codes: 0 success; 1 the server answered with an error (`error: <code>: <message>` on
//! stderr) or the answer could not be understood; 2 bad usage (clap's own, a file that cannot
//! be read, a missing value); 3 the server could not be reached (the message names the host).
//!
//! Output: `--format text` (default) prints values as text when they are UTF-8 and as base64
//! (with a note on stderr) when not. `--format json` prints the server's JSON answer
//! unchanged except that every base64 `value`/`payload` whose bytes are UTF-8 gets a sibling
//! `value_text`/`payload_text` holding the text (the base64 field stays, so binary data is
//! never lost or ambiguous). On an error, JSON mode also prints the server's error body on
//! stdout (so a script can read `current_version` from a 409).

pub mod admin;
pub mod http;
pub mod input;
pub mod kv;
pub mod output;
pub mod queue;
pub mod stream;
pub mod ts;

use std::fmt;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value as Json;

use http::Client;

/// Default `--host`.
pub const DEFAULT_HOST: &str = "127.0.0.1:9002";
/// Default `--namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How answers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-friendly text and tables.
    Text,
    /// The server's JSON (values also decoded to text where they are UTF-8).
    Json,
}

/// Options every client command takes, after the command group (`flo kv --host H get k`,
/// `flo kv get k --host H`); the same options before the group (`flo --host H kv get k`) and
/// the environment are fallbacks, in that order.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientOpts {
    /// Server address host:port [env: FLO_HOST; default: 127.0.0.1:9002].
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub host: Option<String>,
    /// Namespace [env: FLO_NAMESPACE; default: default].
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Bearer token, for a server with auth on [env: FLO_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Output format [default: text].
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
}

/// The same options before the command group (`flo --host H kv get k`), where the
/// environment variables are read.
#[derive(Args, Debug, Clone, Default)]
pub struct TopOpts {
    /// Client commands: server address host:port (default 127.0.0.1:9002).
    #[arg(long, env = "FLO_HOST", value_name = "HOST:PORT")]
    pub host: Option<String>,
    /// Client commands: namespace (default "default").
    #[arg(short = 'n', long, env = "FLO_NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,
    /// Client commands: bearer token.
    #[arg(long, env = "FLO_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Client commands: output format (default text).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Why a client command failed.
#[derive(Debug)]
pub enum CliError {
    /// The server answered with a non-2xx status.
    Server {
        status: u16,
        code: String,
        message: String,
        /// The error body as JSON (`Null` if it was not JSON).
        body: Json,
    },
    /// The server could not be reached.
    Connect { host: String, reason: String },
    /// The connection broke or the answer made no sense.
    Protocol(String),
    /// Bad input from the user (a file that cannot be read, a missing value).
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server { code, message, .. } => write!(f, "{code}: {message}"),
            CliError::Connect { host, reason } => write!(
                f,
                "cannot connect to {host}: {reason} (is the server running? set --host or FLO_HOST)"
            ),
            CliError::Protocol(m) | CliError::Usage(m) => f.write_str(m),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Server { .. } | CliError::Protocol(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
        }
    }
}

/// What a command runs with: the client, the namespace and the output format.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub namespace: String,
    pub format: Format,
}

impl Ctx {
    /// Merges the options after the group, before it (with the environment), and the defaults.
    pub fn new(opts: &ClientOpts, top: &TopOpts) -> Ctx {
        let host = opts
            .host
            .clone()
            .or_else(|| top.host.clone())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let token = opts
            .token
            .clone()
            .or_else(|| top.token.clone())
            .filter(|t| !t.is_empty());
        Ctx {
            client: Client::new(&host, token),
            namespace: opts
                .namespace
                .clone()
                .or_else(|| top.namespace.clone())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            format: opts.format.or(top.format).unwrap_or(Format::Text),
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// The namespace, percent-encoded for a path.
    pub fn ns(&self) -> String {
        http::encode(&self.namespace)
    }
}

/// Runs a client command and turns its outcome into the exit code.
pub fn finish(ctx: &Ctx, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let (true, CliError::Server { body, .. }) = (ctx.json(), &e) {
                if !body.is_null() {
                    output::print_json(body);
                }
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
