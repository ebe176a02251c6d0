//! Seed addresses and the address this node advertises.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use tracing::debug;

/// Resolves `host:port` seeds now (DNS names are looked up on every call, so a leader replaced
/// behind the same private name is found on the next retry). Unresolvable seeds are skipped.
pub(crate) async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => {
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => debug!(seed = %seed, error = %e, "seed does not resolve (yet)"),
        }
    }
    out
}

/// The IP peers should use to reach us: the explicit advertise host, the listen IP if it is
/// specific, the local address that routes towards a seed (or, when no seed resolves yet, along
/// the default route), or loopback.
pub(crate) async fn advertise_ip(
    advertise_host: Option<&str>,
    listen: SocketAddr,
    seeds: &[String],
) -> anyhow::Result<IpAddr> {
    if let Some(host) = advertise_host {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        let addr = tokio::net::lookup_host((host, 0))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("advertise host {host} does not resolve"))?;
        return Ok(addr.ip());
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.ip());
    }
    // TEST-NET-1 (never contacted) stands for "anywhere", i.e. the default route.
    let anywhere = SocketAddr::from(([192, 0, 2, 1], 9));
    for target in resolve(seeds).await.into_iter().chain([anywhere]) {
        // connect() on UDP sends nothing: it only asks the kernel for the route's source address.
        let routed = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(target).and_then(|_| s.local_addr()));
        if let Ok(local) = routed {
            if !local.ip().is_unspecified() {
                return Ok(local.ip());
            }
        }
    }
    Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_names_and_skips_garbage() {
        let got = resolve(&[
            "localhost:7070".to_string(),
            "127.0.0.1:7071".to_string(),
            "no-such-host.invalid:7070".to_string(),
        ])
        .await;
        assert!(got.contains(&"127.0.0.1:7071".parse().unwrap()));
        assert!(got.iter().any(|a| a.port() == 7070));
    }

    #[tokio::test]
    async fn advertise_prefers_explicit_then_listen_ip() {
        let listen: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        let ip = advertise_ip(Some("10.1.2.3"), listen, &[]).await.unwrap();
        assert_eq!(ip.to_string(), "10.1.2.3");
        let ip = advertise_ip(None, "127.0.0.2:7070".parse().unwrap(), &[])
            .await
            .unwrap();
        assert_eq!(ip.to_string(), "127.0.0.2");
        let ip = advertise_ip(None, listen, &["127.0.0.1:7070".to_string()])
            .await
            .unwrap();
        assert!(ip.is_loopback());
    }
}
