//! Hand-rolled HTTP/1.1 on monoio: the request head (`head`), body framing (`body`), the
//! response writer (`response`) and the connection loop (`conn`). httparse reads the request
//! line and header fields; every other rule is ours and is listed in `head` and `body`.

pub mod body;
pub mod budget;
pub mod conn;
pub mod head;
pub mod response;

pub use conn::{serve, ConnLimits, Request, Service};
pub use response::Response;
