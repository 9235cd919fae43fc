//! The address a request came from, for Audit Log events' `context.location`: the TCP peer, unless that peer is a
//! proxy the operator trusts (`TRUSTED_PROXIES`), whose `X-Forwarded-For` then names the client.
//!
//! Only a trusted proxy's word is taken, and only as far as trusted proxies reach: the entries are read right to
//! left (each proxy appends the address it received the request from), trusted ones are skipped, and the first
//! untrusted one is the client. Anything left of it was written by the client and proves nothing. An entry that is
//! not an address (or a header that is not text) ends the walk at the last proxy reached, so a client can never
//! put text of its own into an audit record. `Forwarded` (RFC 7239) is not read: the proxies in front of such apps
//! (load balancers, nginx, ingress controllers) set `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address, as far as `trusted` proxies vouch for it; `peer` when it is not one of them.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut closest = peer.to_canonical();
    if !is_trusted(closest, trusted) {
        return closest;
    }
    // Several field lines are one list in order: the last line holds the right-most entries.
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else { return closest };
        for entry in line.rsplit(',') {
            let Some(address) = parse_entry(entry.trim()) else { return closest };
            if !is_trusted(address, trusted) {
                return address;
            }
            closest = address;
        }
    }
    closest
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|network| network.contains(&address))
}

/// `203.0.113.7`, `2001:db8::1`, or with a port as some proxies write them: `203.0.113.7:443`, `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let address = entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(line).expect("a header value"));
        }
        headers
    }

    fn proxies(raw: &str) -> Vec<IpNet> {
        crate::config::parse_trusted_proxies(raw).expect("trusted proxies")
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(client_address(ip("127.0.0.1"), &headers, &[]), ip("127.0.0.1"));
        // Nor from a peer that is not one of them.
        assert_eq!(client_address(ip("198.51.100.9"), &headers, &proxies("127.0.0.1")), ip("198.51.100.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(client_address(ip("10.1.2.3"), &headers, &proxies("10.0.0.0/8")), ip("203.0.113.7"));
        // No header: the proxy itself is all that is known.
        assert_eq!(client_address(ip("10.1.2.3"), &HeaderMap::new(), &proxies("10.0.0.0/8")), ip("10.1.2.3"));
    }

    #[test]
    fn what_the_client_wrote_left_of_the_first_untrusted_entry_is_ignored() {
        // The client sent "1.1.1.1"; the edge proxy appended the client's real address, the inner one the edge's.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7, 10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &headers, &proxies("10.0.0.0/8")), ip("203.0.113.7"));
        // Split over two field lines, the same list.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7", "10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &headers, &proxies("10.0.0.0/8")), ip("203.0.113.7"));
    }

    #[test]
    fn a_malformed_entry_ends_the_walk_at_the_last_proxy() {
        let trusted = proxies("10.0.0.0/8");
        for line in ["<script>, 10.0.0.2", "unknown, 10.0.0.2", ", 10.0.0.2", "999.1.1.1, 10.0.0.2"] {
            assert_eq!(client_address(ip("10.0.0.1"), &forwarded(&[line]), &trusted), ip("10.0.0.2"), "{line}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(b"203.0.113.\xff").expect("opaque bytes"));
        assert_eq!(client_address(ip("10.0.0.1"), &headers, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn every_hop_trusted_leaves_the_left_most() {
        let headers = forwarded(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &headers, &proxies("10.0.0.0/8")), ip("10.9.9.9"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read_as_addresses() {
        let trusted = proxies("10.0.0.0/8, ::1");
        let headers = forwarded(&["203.0.113.7:5123"]);
        assert_eq!(client_address(ip("10.0.0.1"), &headers, &trusted), ip("203.0.113.7"));
        let headers = forwarded(&["[2001:db8::7]:443"]);
        assert_eq!(client_address(ip("::1"), &headers, &trusted), ip("2001:db8::7"));
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(client_address(ip("::ffff:10.0.0.1"), &headers, &trusted), ip("203.0.113.7"));
    }
}
