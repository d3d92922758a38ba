//! Port preflight: is each host port of a slot free to publish?

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

use crate::ports::SlotPort;

/// Whether something already holds `port` on the IPv4 or IPv6 wildcard or loopback.
pub fn is_busy(port: u16) -> bool {
    let in_use = |r: std::io::Result<TcpListener>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse);
    in_use(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        || in_use(TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
        || in_use(TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))
        || in_use(TcpListener::bind((Ipv6Addr::LOCALHOST, port)))
}

/// The ports of `ports` that are in use. A port is only called busy when it stays busy
/// for a moment: another kinfra's own bind test holds a port for microseconds.
pub fn busy(ports: &[SlotPort]) -> Vec<SlotPort> {
    let stays_busy = |port: u16| {
        (0..3).all(|attempt| {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
            is_busy(port)
        })
    };
    ports
        .iter()
        .filter(|p| stays_busy(p.port))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_makes_its_port_busy() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(is_busy(port));
        drop(l);
        assert!(!is_busy(port));
    }
}
