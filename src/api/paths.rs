//! One spelling of every path, settled before authentication and routing look at it:
//! `/api/v1/%63ustomers`, `/api//v1/customers` and `/api/v1/x/../customers` all name
//! `/api/v1/customers`. Without it the middleware that demands a key and the router
//! could read one request as two different paths.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::uri::{PathAndQuery, Uri};
use actix_web::middleware::Next;

/// The path with unreserved characters (RFC 3986, 2.3) decoded, empty segments merged
/// and `.` and `..` segments resolved (5.2.4); `None` when it is already so. Escapes of
/// other characters stay as they are: `%2F` is data inside a segment, not a slash.
pub fn normalized(path: &str) -> Option<String> {
    // What every ordinary request has: no escape, no empty or dot segment.
    if !path.contains('%') && !path.contains("//") && !path.contains("/.") {
        return None;
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let last_is_directory = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut normal = String::with_capacity(decoded.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() || (last_is_directory && !segments.is_empty()) {
        normal.push('/');
    }
    (normal != path).then_some(normal)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' && at + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok());
            if let Some(byte) = hex.filter(|byte| is_unreserved(*byte)) {
                decoded.push(char::from(byte));
                at += 3;
                continue;
            }
        }
        let width = path[at..].chars().next().map_or(1, char::len_utf8);
        decoded.push_str(&path[at..at + width]);
        at += width;
    }
    decoded
}

/// Middleware, outermost: rewrites the request's path to its normal spelling.
pub async fn normalize(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(path) = normalized(req.path()) {
        let mut parts = req.uri().clone().into_parts();
        let path_and_query = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        // The normal form is made of what the request's path held, so it parses.
        if let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn one_spelling_per_path() {
        assert_eq!(normalized("/api/v1/customers"), None);
        assert_eq!(normalized("/api/v1/%63ustomers").as_deref(), Some("/api/v1/customers"));
        assert_eq!(normalized("/api/v1/%63USTOMERS").as_deref(), Some("/api/v1/cUSTOMERS"));
        assert_eq!(normalized("//api///v1/customers").as_deref(), Some("/api/v1/customers"));
        assert_eq!(normalized("/api/v1/./schemes/../customers").as_deref(), Some("/api/v1/customers"));
        assert_eq!(normalized("/api/v1/%2e%2e/v1/customers").as_deref(), Some("/api/v1/customers"));
        assert_eq!(normalized("/../../api/v1/customers").as_deref(), Some("/api/v1/customers"));
        assert_eq!(normalized("/api/v1/customers/").as_deref(), None);
        assert_eq!(normalized("/api/v1/customers/.").as_deref(), Some("/api/v1/customers/"));
        assert_eq!(normalized("/"), None);
        assert_eq!(normalized("//").as_deref(), Some("/"));
    }

    #[test]
    fn escapes_of_data_stay() {
        assert_eq!(normalized("/api/v1/customers/A%2FB"), None);
        assert_eq!(normalized("/api/v1/customers/%E5%AE%A2"), None);
        assert_eq!(normalized("/api/v1/customers/%4"), None);
        assert_eq!(normalized("/api/v1/customers/%"), None);
        assert_eq!(normalized("/api/v1/customers/客户%41").as_deref(), Some("/api/v1/customers/客户A"));
    }
}
