//! Client source addresses.
//!
//! One source address gives at most ~28k ephemeral ports towards one server port, so a load
//! beyond that spreads its sockets over several loopback addresses (all of 127.0.0.0/8 is local on
//! Linux). The list is parsed once and handed out round-robin by connection number.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// At most this many addresses in one list: a typo such as `127.0.0.1-127.255.255.255` should be
/// an error, not a 16-million-entry vector.
const MAX_ADDRS: u32 = 4096;

/// A non-empty list of loopback IPv4 source addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(Vec<Ipv4Addr>);

impl SourceIps {
    /// The address connection number `n` binds to.
    pub fn for_connection(&self, n: u64) -> Ipv4Addr {
        // The list is never empty (checked by `from_str`) and its length fits in u64.
        self.0[(n % self.0.len() as u64) as usize]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromStr for SourceIps {
    type Err = String;

    /// Comma-separated addresses or inclusive ranges: `127.0.0.1`, `127.0.0.1-127.0.0.20`, or
    /// `127.0.0.1-20` (the end as a last octet).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                None => {
                    let ip = parse_ip(part)?;
                    (ip, ip)
                }
                Some((a, b)) => {
                    let first = parse_ip(a.trim())?;
                    let b = b.trim();
                    let last = if b.contains('.') {
                        parse_ip(b)?
                    } else {
                        let octet: u8 = b
                            .parse()
                            .map_err(|_| format!("bad range end {b:?} in {part:?}"))?;
                        let [a0, a1, a2, _] = first.octets();
                        Ipv4Addr::new(a0, a1, a2, octet)
                    };
                    (first, last)
                }
            };
            let (lo, hi) = (u32::from(first), u32::from(last));
            if hi < lo {
                return Err(format!("range {part:?} ends before it starts"));
            }
            if (hi - lo) as usize + out.len() >= MAX_ADDRS as usize {
                return Err(format!("more than {MAX_ADDRS} source addresses"));
            }
            out.extend((lo..=hi).map(Ipv4Addr::from));
        }
        if out.is_empty() {
            return Err("no source address given".into());
        }
        Ok(SourceIps(out))
    }
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("not an IPv4 address: {s:?}"))?;
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address (ews-load only loads loopback)"
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_list_and_ranges() {
        let s: SourceIps = "127.0.0.1".parse().unwrap();
        assert_eq!(s.len(), 1);
        let s: SourceIps = "127.0.0.1-127.0.0.20".parse().unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s, "127.0.0.1-20".parse().unwrap());
        let s: SourceIps = "127.0.0.5, 127.0.1.1-3".parse().unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.for_connection(1), Ipv4Addr::new(127, 0, 1, 1));
    }

    #[test]
    fn round_robin_wraps() {
        let s: SourceIps = "127.0.0.1-3".parse().unwrap();
        let got: Vec<u8> = (0..7).map(|n| s.for_connection(n).octets()[3]).collect();
        assert_eq!(got, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn ranges_cross_octets() {
        let s: SourceIps = "127.0.0.255-127.0.1.1".parse().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.for_connection(1), Ipv4Addr::new(127, 0, 1, 0));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            ",",
            "10.0.0.1",
            "127.0.0.9-3",
            "127.0.0.1-x",
            "127.0.0.1-300",
            "localhost",
            "127.0.0.0-127.255.255.255",
        ] {
            assert!(bad.parse::<SourceIps>().is_err(), "{bad:?} accepted");
        }
    }
}
