//! CORS, off unless `cors_allowed_origins` lists origins: a request from a listed origin gets
//! `Access-Control-Allow-Origin` (its own origin echoed, with `Vary: Origin`), and its preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered `204` with the methods and
//! headers the API takes. Other origins get no CORS headers, so browsers refuse them.

use std::io::Cursor;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method, Status};
use rocket::{Request, Response};

/// Methods the routes answer.
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Request headers a browser may send: the key, the body's type and a request id.
const ALLOW_HEADERS: &str = "Authorization, X-API-Key, Content-Type, X-Request-Id";
/// Response headers a browser script may read.
const EXPOSE_HEADERS: &str = "X-Request-Id, Location, Retry-After, WWW-Authenticate";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECONDS: &str = "600";

/// Whether `text` can name an origin: `*`, or `scheme://host[:port]` with no path.
pub fn is_origin_pattern(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

/// The CORS fairing, attached when origins are configured.
#[derive(Debug)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// A fairing allowing `origins` (`*` allows any), or `None` when the list is empty.
    pub fn new(origins: &[String]) -> Option<Self> {
        if origins.is_empty() {
            return None;
        }
        Some(Cors { any: origins.iter().any(|o| o == "*"), origins: origins.to_vec() })
    }

    /// Scheme and host compare without regard to case, as browsers may differ there.
    fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

#[rocket::async_trait]
impl Fairing for Cors {
    fn info(&self) -> Info {
        Info { name: "CORS", kind: Kind::Response }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(origin) = req.headers().get_one("Origin") else {
            return;
        };
        if !self.allows(origin) {
            return;
        }
        res.set_header(Header::new("Access-Control-Allow-Origin", origin.to_owned()));
        res.adjoin_header(Header::new("Vary", "Origin"));
        res.set_header(Header::new("Access-Control-Expose-Headers", EXPOSE_HEADERS));
        let preflight =
            req.method() == Method::Options && req.headers().get_one("Access-Control-Request-Method").is_some();
        if preflight {
            // No route answers OPTIONS: the catcher's 404 becomes the preflight's empty 204.
            res.set_status(Status::NoContent);
            res.remove_header("Content-Type");
            res.set_sized_body(0, Cursor::new(Vec::new()));
            res.set_header(Header::new("Access-Control-Allow-Methods", ALLOW_METHODS));
            res.set_header(Header::new("Access-Control-Allow-Headers", ALLOW_HEADERS));
            res.set_header(Header::new("Access-Control-Max-Age", MAX_AGE_SECONDS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in ["*", "https://app.example", "http://127.0.0.1:8080", "app+x://h"] {
            assert!(is_origin_pattern(good), "{good}");
        }
        for bad in ["", "app.example", "https://", "https://a.example/path", "://h", "https://a b"] {
            assert!(!is_origin_pattern(bad), "{bad}");
        }
    }
}
