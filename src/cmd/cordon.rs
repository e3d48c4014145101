//! `ketch cordon NODE` / `ketch uncordon NODE`: set or clear the Node's `spec.unschedulable`
//! with a merge patch, as kubectl does. The scheduler skips a cordoned node; the node
//! lifecycle controller adds the `node.kubernetes.io/unschedulable:NoSchedule` taint that
//! says so. `ketch drain` cordons through [`set_unschedulable`] too.

use clap::Args;
use ketch_api::core::Node;
use ketch_api::resource::Resource;
use ketch_client::Client;

use super::shared::{Connection, client};
use crate::printer::display_name;

#[derive(Args, Debug)]
pub struct CordonArgs {
    /// The node's name
    node: String,
}

/// `cordon` when `unschedulable`, `uncordon` otherwise.
pub async fn run(conn: &Connection, args: CordonArgs, unschedulable: bool) -> anyhow::Result<()> {
    let client = client(conn).await?;
    let changed = set_unschedulable(&client, &args.node, unschedulable).await?;
    println!("{}", message(&args.node, unschedulable, changed));
    Ok(())
}

/// Sets the node's `spec.unschedulable`; returns whether that changed anything. Uncordoning
/// removes the field (kubectl leaves `false` out as well).
///
/// # Errors
/// The node does not exist, or the API refused the patch.
pub async fn set_unschedulable(
    client: &Client,
    node: &str,
    unschedulable: bool,
) -> anyhow::Result<bool> {
    let current = client.api::<Node>(None).get(node).await?;
    let was = current.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    if was == unschedulable {
        return Ok(false);
    }
    let value = if unschedulable {
        serde_json::Value::Bool(true)
    } else {
        serde_json::Value::Null
    };
    let patch = serde_json::json!({"spec": {"unschedulable": value}});
    client
        .api::<Node>(None)
        .merge_patch(node, &patch, false)
        .await?;
    Ok(true)
}

/// kubectl's wording: `node/a cordoned`, `node/a already uncordoned`.
pub fn message(node: &str, unschedulable: bool, changed: bool) -> String {
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    let already = if changed { "" } else { "already " };
    format!("{} {already}{verb}", display_name(Node::INFO, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_are_kubectls() {
        assert_eq!(message("a", true, true), "node/a cordoned");
        assert_eq!(message("a", true, false), "node/a already cordoned");
        assert_eq!(message("b", false, true), "node/b uncordoned");
        assert_eq!(message("b", false, false), "node/b already uncordoned");
    }
}
