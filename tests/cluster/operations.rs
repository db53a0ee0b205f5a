//! The cluster through what operators do and what happens to them: PostgreSQL out of reach
//! for seconds, and a rolling restart of every node under load.

use std::time::{Duration, Instant};

use boxoffice::auth::jwt::Role;

use crate::process::Proxy;
use crate::support::{eventually, Cluster, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_reach_stops_every_node_and_all_recover_by_themselves() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let through_proxy =
        db.url()
            .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        through_proxy,
        db.url(),
        "the nodes reach PostgreSQL through the proxy"
    );
    let cluster = Cluster::start_on(db, through_proxy, 3, &[])
        .await
        .with_haproxy()
        .await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(16).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    let load = Load::start(cluster.front(""), tokens.clone(), event, section);
    load.until_more(100, "the burst got going").await;

    // PostgreSQL unreachable: every connection cut, new ones refused.
    proxy.cut();
    let cut_at = Instant::now();
    // Every node stops deciding: no lease, and a request sent to it straight is refused.
    for i in 0..3 {
        eventually(
            Duration::from_secs(30),
            "the node gave its lease up",
            || async {
                cluster
                    .view(i)
                    .await
                    .is_some_and(|v| v["incarnation"].is_null())
            },
        )
        .await;
        let direct = cluster
            .hold(
                &cluster.nodes[i].url(""),
                &tokens[0],
                event,
                section,
                "during-cut",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            direct.status(),
            503,
            "node {i} decides nothing without PostgreSQL"
        );
    }
    // Five seconds of outage, then PostgreSQL is back.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed())).await;
    proxy.restore();
    for i in 0..3 {
        eventually(Duration::from_secs(60), "the node rejoined", || async {
            cluster
                .view(i)
                .await
                .is_some_and(|v| v["incarnation"].is_i64())
        })
        .await;
    }
    load.until_more(100, "holds were acknowledged again").await;
    let (acked, unknown) = load.stop().await;
    assert!(unknown > 0, "the outage was felt");
    assert!(
        acked
            .iter()
            .any(|(_, at)| *at > cut_at + Duration::from_secs(5)),
        "sales resumed after the outage"
    );
    assert!(cluster
        .stored_keys(event, &["during-cut".into()])
        .await
        .is_empty());
    cluster.assert_all_stored(event, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_fails_nothing() {
    let cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(16).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    let mut cluster = cluster;
    let load = Load::start(cluster.front(""), tokens, event, section);
    load.until_more(100, "the load got going").await;
    let mut handed_over = 0;
    for i in 0..3 {
        let owned = cluster.owner(event).await.as_deref() == Some(cluster.nodes[i].id.as_str());
        let server = cluster.nodes[i].server.as_mut().unwrap();
        let exited = server.terminate(Duration::from_secs(30)).await;
        assert!(
            exited.is_some_and(|s| s.success()),
            "node {i} drained and exited 0: {exited:?}"
        );
        if owned {
            // The owner handed the event over on its way out, rather than leaving the others
            // to wait for its lease to run out.
            // (Its last lines may still be on their way through the pipe.)
            let output = server.output.clone();
            eventually(
                Duration::from_secs(10),
                "the owner logged its hand-over",
                || {
                    let output = output.lock().unwrap().clone();
                    async move {
                        output.contains("handed this node's events over")
                            && output.contains(r#""events":1"#)
                    }
                },
            )
            .await;
            handed_over += 1;
        }
        cluster.nodes[i].server = None;
        cluster.start_node(i).await;
        load.until_more(100, "holds kept being acknowledged").await;
    }
    assert!(
        handed_over >= 1,
        "the event's owner was among the restarted"
    );
    let (acked, unknown) = load.stop().await;
    let longest_gap = acked
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap();
    eprintln!(
        "rolling restart: {} holds acknowledged, {unknown} answers retried (503), longest gap between acknowledgements {longest_gap:?}",
        acked.len()
    );
    cluster.assert_all_stored(event, &acked).await;
}
