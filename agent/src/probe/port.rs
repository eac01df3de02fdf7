//! Port probe: is anything listening on the port? Asks the kernel for its listening TCP sockets
//! over netlink (`sock_diag`, what `ss -ltn` does: only the listening table is walked, however
//! many connections the host has), falling back to `/proc/net/tcp*` (what `netstat -tlnp` reads,
//! which walks every socket). Works whatever address the service bound; opens no connection.

use dr_proto::domain::{PortProbe, PortState};

const TCP_LISTEN: &str = "0A";

/// Listening ports found in one `/proc/net/tcp*` table.
fn listening_ports(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != TCP_LISTEN {
            return None;
        }
        let port_hex = local.rsplit(':').next()?;
        u16::from_str_radix(port_hex, 16).ok()
    })
}

/// Listening TCP ports (IPv4 and IPv6) from netlink `sock_diag`.
fn listening_ports_netlink() -> std::io::Result<std::collections::HashSet<u16>> {
    use rustix::net::netlink::{self, SocketAddrNetlink};
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, recv, sendto, socket};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    let fd = socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )?;
    let mut ports = std::collections::HashSet::new();
    let mut buf = vec![0u8; 32 * 1024];
    for (seq, family) in [(1u32, 2u8 /* AF_INET */), (2, 10 /* AF_INET6 */)] {
        // nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes), native endian
        let mut req = Vec::with_capacity(72);
        req.extend_from_slice(&72u32.to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[family, 6 /* IPPROTO_TCP */, 0, 0]);
        req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        req.extend_from_slice(&[0u8; 48]);
        sendto(&fd, &req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
        'messages: loop {
            let (_, n) = recv(&fd, &mut buf[..], RecvFlags::empty())?;
            let mut off = 0usize;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
                if len < 16 || off + len > n {
                    return Err(std::io::Error::other("malformed netlink answer"));
                }
                match kind {
                    NLMSG_DONE => break 'messages,
                    NLMSG_ERROR => {
                        return Err(std::io::Error::other(
                            "netlink sock_diag refused the request",
                        ));
                    }
                    _ => {
                        let msg = &buf[off + 16..off + len];
                        if msg.len() >= 6 {
                            ports.insert(u16::from_be_bytes([msg[4], msg[5]]));
                        }
                    }
                }
                off += (len + 3) & !3;
            }
            if n == 0 {
                break;
            }
        }
    }
    Ok(ports)
}

/// Probe all `ports` at once.
pub fn probe(ports: &[u16]) -> Vec<PortProbe> {
    if ports.is_empty() {
        return Vec::new();
    }
    if let Ok(listening) = listening_ports_netlink() {
        return ports
            .iter()
            .map(|&port| {
                let up = listening.contains(&port);
                PortProbe {
                    port,
                    state: if up {
                        PortState::Listening
                    } else {
                        PortState::Refused
                    },
                    detail: if up {
                        String::new()
                    } else {
                        format!("no socket listening on port {port}")
                    },
                }
            })
            .collect();
    }
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(path) {
            Ok(t) => tables.push(t),
            Err(e) => errors.push(format!("{path}: {e}")),
        }
    }
    ports
        .iter()
        .map(|&port| {
            if tables.is_empty() {
                return PortProbe {
                    port,
                    state: PortState::Error,
                    detail: format!("cannot read socket tables: {}", errors.join("; ")),
                };
            }
            let listening = tables.iter().any(|t| listening_ports(t).any(|p| p == port));
            PortProbe {
                port,
                state: if listening {
                    PortState::Listening
                } else {
                    PortState::Refused
                },
                detail: if listening {
                    String::new()
                } else {
                    format!("no socket listening on port {port}")
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        let ports: Vec<u16> = listening_ports(table).collect();
        assert_eq!(ports, vec![8080]);
    }

    #[test]
    fn netlink_lists_listening_sockets_of_both_families() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let ports = listening_ports_netlink().expect("sock_diag works here");
        assert!(ports.contains(&v4.local_addr().unwrap().port()));
        if let Some(v6) = v6 {
            assert!(ports.contains(&v6.local_addr().unwrap().port()));
        }
        // a connected (not listening) socket is not listed
        let c = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let local = c.local_addr().unwrap().port();
        assert!(!listening_ports_netlink().unwrap().contains(&local));
    }

    #[test]
    fn sees_a_real_listener_and_its_absence() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let r = probe(&[port]);
        assert_eq!(r[0].state, PortState::Listening);
        drop(l);
        let r = probe(&[port]);
        assert_eq!(r[0].state, PortState::Refused);
    }
}
