//! `TRUSTED_PROXIES`: the balancers whose `X-Forwarded-For` is believed.
//!
//! Behind a balancer every request comes from the balancer's address, so sign-in throttling per
//! client address would count every client together. When the TCP peer is one of these
//! addresses or blocks, the client is the right-most `X-Forwarded-For` entry that is not itself a
//! trusted proxy: entries further left were written by the client and may be anything. Any other
//! peer's header is ignored (docs/security.md).

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// Addresses and CIDR blocks (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`), comma-separated.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxies(Vec<Block>);

/// One address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or a CIDR block"))?;
        let network = canonical(network);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {bits}"))?,
        };
        Ok(Self { network, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The first `prefix` bits of a `bits`-bit address.
fn masked(value: u128, prefix: u8, bits: u8) -> u128 {
    let shift = u32::from(bits - prefix);
    value.checked_shr(shift).unwrap_or(0)
}

/// IPv4-mapped IPv6 addresses as IPv4, so that `127.0.0.1` matches a dual-stack socket's peer.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl TryFrom<String> for TrustedProxies {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(Block::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks: Vec<String> = self
            .0
            .iter()
            .map(|b| format!("{}/{}", b.network, b.prefix))
            .collect();
        write!(f, "[{}]", blocks.join(","))
    }
}

impl TrustedProxies {
    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy; then the right-most
    /// entry of the `X-Forwarded-For` values (in header order) that is not a trusted proxy. An
    /// entry that is not an address stops the walk at `peer`'s answer: nothing is believed past
    /// an entry the proxies would not have written.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded.flat_map(|value| value.split(',')).collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                return peer;
            };
            client = canonical(address);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn proxies(text: &str) -> TrustedProxies {
        TrustedProxies::try_from(text.to_owned()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_of_both_families_parse_and_match() {
        let trusted = proxies(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8,::1");
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(trusted.contains(ip("::1")));
        assert!(!trusted.contains(ip("2001:db8::1")));
        assert!(
            trusted.contains(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped peer"
        );
        assert!(proxies("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert_eq!(proxies(""), TrustedProxies::default());
    }

    #[test]
    fn invalid_entries_are_named() {
        for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/x", "::/129"] {
            let error = TrustedProxies::try_from(bad.to_owned()).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_header_says() {
        let trusted = proxies("10.0.0.0/8");
        let peer = ip("198.51.100.1");
        assert_eq!(trusted.client(peer, ["203.0.113.5"].into_iter()), peer);
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), ["203.0.113.5"].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let trusted = proxies("10.0.0.0/8");
        let balancer = ip("10.0.0.2");
        // The client sent a spoofed entry; the balancer appended the real address.
        assert_eq!(
            trusted.client(balancer, ["1.2.3.4, 203.0.113.5"].into_iter()),
            ip("203.0.113.5")
        );
        // Two proxies, two headers.
        assert_eq!(
            trusted.client(balancer, ["198.51.100.7", "10.1.1.1"].into_iter()),
            ip("198.51.100.7")
        );
        // No header: the peer.
        assert_eq!(trusted.client(balancer, std::iter::empty()), balancer);
        // Garbage where an address should be: believe nothing.
        assert_eq!(
            trusted.client(balancer, ["1.2.3.4, junk"].into_iter()),
            balancer
        );
        // Only proxies: the left-most of them.
        assert_eq!(
            trusted.client(balancer, ["10.9.9.9"].into_iter()),
            ip("10.9.9.9")
        );
    }
}
