//! `boxoffice cluster status`: the cluster as PostgreSQL records it.

use serde::Serialize;

/// One node, as its row and the events table say.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node_id: String,
    /// Where the other nodes forward to it.
    pub url: String,
    pub incarnation: i64,
    /// Whether its lease is good by PostgreSQL's clock.
    pub lease_held: bool,
    /// Seconds until its lease runs out (negative: ran out that long ago).
    pub lease_seconds_left: f64,
    /// Events it owns under its current incarnation.
    pub events_owned: i64,
    /// Events still recorded under one of its former incarnations (free to claim).
    pub events_of_former_incarnations: i64,
}

/// Every node, by id.
pub async fn nodes(pool: &sqlx::PgPool) -> Result<Vec<NodeStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.node_id, n.url, n.incarnation,
                n.lease_until > clock_timestamp() AS lease_held,
                EXTRACT(EPOCH FROM (n.lease_until - clock_timestamp()))::float8
                    AS lease_seconds_left,
                (SELECT count(*) FROM events e
                  WHERE e.owner_node = n.node_id AND e.owner_incarnation = n.incarnation)
                    AS events_owned,
                (SELECT count(*) FROM events e
                  WHERE e.owner_node = n.node_id
                    AND e.owner_incarnation IS DISTINCT FROM n.incarnation)
                    AS events_of_former_incarnations
           FROM cluster_nodes n ORDER BY n.node_id",
    )
    .fetch_all(pool)
    .await
}

/// Prints every node with its lease and the events it owns. Errors when no node holds a
/// lease, so that a script can tell.
pub async fn status(pool: &sqlx::PgPool, json: bool) -> anyhow::Result<()> {
    let nodes = nodes(pool).await?;
    let unowned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE owner_node IS NULL AND status = 'ON_SALE'",
    )
    .fetch_one(pool)
    .await?;
    let live = nodes.iter().filter(|n| n.lease_held).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "nodes": nodes, "liveNodes": live, "onSaleEventsUnowned": unowned,
            }))?
        );
    } else {
        println!(
            "{:<28} {:<28} {:>11} {:>16} {:>6} {:>12}",
            "node", "url", "incarnation", "lease", "owns", "stale owned"
        );
        for n in &nodes {
            let lease = if n.lease_held {
                format!("{:.1} s left", n.lease_seconds_left)
            } else {
                format!("expired {:.0} s ago", -n.lease_seconds_left)
            };
            println!(
                "{:<28} {:<28} {:>11} {:>16} {:>6} {:>12}",
                n.node_id,
                n.url,
                n.incarnation,
                lease,
                n.events_owned,
                n.events_of_former_incarnations
            );
        }
        println!(
            "{live} of {} nodes hold a lease; {unowned} events on sale have no owner (the next request claims them)",
            nodes.len()
        );
    }
    anyhow::ensure!(live > 0, "no node holds a lease");
    Ok(())
}
