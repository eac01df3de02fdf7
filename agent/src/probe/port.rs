//! Port probe: is anything listening on the port? Reads the kernel's socket tables
//! (`/proc/net/tcp` and `tcp6`, what `netstat -tlnp` shows), so it works whatever address the
//! service bound and opens no connection to it.

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

/// Probe all `ports` at once.
pub fn probe(ports: &[u16]) -> Vec<PortProbe> {
    if ports.is_empty() {
        return Vec::new();
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
