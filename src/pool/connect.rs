//! Opening a server connection for a pool: try the entry's hosts in the
//! order the host set prefers (right role, fewest connections), skipping a
//! host that fails or turns out to have the wrong role, until one fits.

use crate::server::hosts::{HostSet, ServerRole};
use crate::server::{ConnectError, ConnectTarget, ServerConn};

/// Opens and logs in a connection to a host of `hosts` that has the role the
/// entry needs. Each host is tried at most once per call.
pub async fn open(
    hosts: &HostSet,
    target: &ConnectTarget,
) -> Result<Box<ServerConn>, ConnectError> {
    let mut tried = vec![false; hosts.hosts.len()];
    let mut last = None;
    while let Some(pick) = hosts.pick(&tried).await {
        let pick = match pick {
            Ok(p) => p,
            Err((index, why)) => {
                tried[index] = true;
                hosts.set_aside(index, &why);
                last = Some(ConnectError::Resolve(why));
                continue;
            }
        };
        tried[pick.index] = true;
        let host = &hosts.hosts[pick.index];
        match ServerConn::connect_at(target, Some(pick.addr)).await {
            Ok(mut conn) => {
                let role = ServerRole::from_standby(conn.standby.unwrap_or(false));
                if hosts.accepts(pick.index, role) {
                    conn.host = pick.index;
                    // Read after `accepts`, which may have moved it on.
                    conn.host_generation = host.generation();
                    hosts.opened(pick.index);
                    return Ok(Box::new(conn));
                }
                last = Some(ConnectError::WrongRole {
                    host: host.name.clone(),
                    port: host.port,
                    role: role.as_str(),
                    database: hosts.database.clone(),
                    wanted: hosts.role.as_str(),
                });
                tokio::spawn(conn.terminate());
            }
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                hosts.set_aside(pick.index, &e.to_string());
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::NoHost(hosts.describe())))
}
