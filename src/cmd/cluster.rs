//! `ketch cluster members` and `ketch cluster remove ID`: the servers of the control plane,
//! as the leader sees them (any server forwards `/cluster` calls to the leader).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ketch_control::server::cluster::MemberList;

use super::shared::{Connection, client};

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// List the servers: id, address, role (voter/learner), leader, last log index
    Members,
    /// Remove a server from the cluster (its id from `ketch cluster members`)
    Remove {
        /// The server's id
        id: u64,
    },
}

pub async fn run(conn: &Connection, args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Members => members(conn).await,
        ClusterCommand::Remove { id } => remove(conn, id).await,
    }
}

async fn members(conn: &Connection) -> anyhow::Result<()> {
    let client = client(conn).await?;
    let list: MemberList = serde_json::from_value(client.get_path("/cluster/members").await?)
        .context("decoding the member list")?;
    print!("{}", table(&list));
    Ok(())
}

async fn remove(conn: &Connection, id: u64) -> anyhow::Result<()> {
    let client = client(conn).await?;
    let list: MemberList = serde_json::from_value(
        client
            .delete_path(&format!("/cluster/members/{id}"))
            .await?,
    )
    .context("decoding the member list")?;
    println!("server {id} removed");
    print!("{}", table(&list));
    Ok(())
}

/// ID, ADDRESS, ROLE, LEADER ("*" on the leader), LAST-LOG-INDEX ("-" when unknown).
fn table(list: &MemberList) -> String {
    let rows: Vec<Vec<String>> = list
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.address.clone(),
                m.role.clone(),
                if m.leader { "*" } else { "" }.into(),
                m.last_log_index
                    .map_or_else(|| "-".into(), |i| i.to_string()),
            ]
        })
        .collect();
    crate::printer::render(
        &["ID", "ADDRESS", "ROLE", "LEADER", "LAST-LOG-INDEX"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use ketch_control::store::Member;

    use super::*;

    #[test]
    fn the_table_marks_the_leader_and_unknown_progress() {
        let member = |id, leader, last| Member {
            id,
            address: format!("127.0.0.1:{id}"),
            role: "voter".into(),
            leader,
            last_log_index: last,
        };
        let list = MemberList {
            leader: Some(1),
            members: vec![member(1, true, Some(12)), member(22, false, None)],
        };
        assert_eq!(
            table(&list),
            "ID   ADDRESS        ROLE    LEADER   LAST-LOG-INDEX\n\
             1    127.0.0.1:1    voter   *        12\n\
             22   127.0.0.1:22   voter            -\n"
        );
    }
}
