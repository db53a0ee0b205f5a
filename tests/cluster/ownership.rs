//! Who decides for an event: exactly one node, and any other node sends its requests there.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use boxoffice::auth::jwt::Role;
use futures::StreamExt;

use crate::support::{Cluster, Seen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_events_through_haproxy_each_have_exactly_one_owner() {
    let cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let buyers = cluster.buyers(5).await;
    let mut events = Vec::new();
    for _ in 0..30 {
        events.push(
            cluster
                .event_on_sale(&cluster.front(""), &organizer, 100)
                .await,
        );
    }
    // Five holds per event, all through HAProxy, all at once.
    let cluster = &cluster;
    let holds = futures::future::join_all(events.iter().flat_map(|&(event, section)| {
        buyers.iter().enumerate().map(move |(b, token)| {
            let request = cluster.hold(
                &cluster.front(""),
                token,
                event,
                section,
                &format!("h-{event}-{b}"),
            );
            crate::process::attempt(request)
        })
    }))
    .await;
    let granted = holds.iter().filter(|s| matches!(s, Seen::Ok(_))).count();
    assert_eq!(granted, 150, "every hold answered 201: {holds:?}");

    // Each event: one owner in PostgreSQL, with a live lease, and it is the node whose
    // actor holds the event; no event lives on two nodes.
    let mut owner_of: HashMap<i64, usize> = HashMap::new();
    for i in 0..3 {
        for event in cluster.live_events(i).await {
            assert!(
                owner_of.insert(event, i).is_none(),
                "event {event} lives on two nodes"
            );
        }
    }
    for &(event, _) in &events {
        let owner = cluster.owner(event).await.expect("an owner");
        assert_eq!(
            owner_of.get(&event).copied(),
            Some(cluster.index_of(&owner)),
            "event {event}: PostgreSQL names {owner} as its owner"
        );
        cluster.assert_invariants(event).await;
    }
    let owners: BTreeSet<usize> = owner_of.values().copied().collect();
    assert!(
        owners.len() > 1,
        "consistent hashing spread the events over the nodes: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_to_a_non_owner_is_forwarded_exactly_once() {
    let cluster = Cluster::start(3, &[]).await;
    let organizer = cluster.user(Role::Organizer).await;
    let buyer = cluster.buyers(1).await.remove(0);
    // Made through node 0, which claims the event when its first section is added.
    let (event, section) = cluster
        .event_on_sale(&cluster.nodes[0].url(""), &organizer, 100)
        .await;
    assert_eq!(cluster.owner(event).await.as_deref(), Some("node-0"));

    // A hold sent to node 1: forwarded to node 0 once, and answered.
    let held = cluster
        .hold(
            &cluster.nodes[1].url(""),
            &buyer,
            event,
            section,
            "straight-to-1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 201);
    let key = ["straight-to-1".to_string()];
    assert_eq!(cluster.stored_keys(event, &key).await.len(), 1);
    assert_eq!(
        cluster
            .counter(1, "boxoffice_cluster_forwards_total", "result=\"answered\"")
            .await,
        1.0
    );
    assert_eq!(
        cluster.owner(event).await.as_deref(),
        Some("node-0"),
        "still"
    );
    assert_eq!(cluster.live_events(1).await, Vec::<i64>::new());

    // A request that already was forwarded is never forwarded again: node 2 answers 503
    // and says it is not the owner.
    let again = cluster
        .hold(&cluster.nodes[2].url(""), &buyer, event, section, "loop")
        .header(boxoffice::cluster::FORWARDED_BY, "node-x")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 503);
    assert!(again.headers().contains_key(boxoffice::cluster::NOT_OWNER));
    assert!(again.headers().contains_key("retry-after"));
    assert_eq!(
        cluster
            .counter(2, "boxoffice_cluster_forwards_total", "")
            .await,
        0.0
    );
    assert!(cluster
        .stored_keys(event, &["loop".to_string()])
        .await
        .is_empty());

    // Reads and the live stream are forwarded too, the stream as it flows.
    let inventory = cluster
        .client
        .get(cluster.nodes[2].url(&format!("/events/{event}/inventory")))
        .send()
        .await
        .unwrap();
    assert_eq!(inventory.status(), 200);
    let stream = cluster
        .client
        .get(cluster.nodes[1].url(&format!("/events/{event}/inventory/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !text.contains("event: state") {
            let chunk = body.next().await.expect("open").expect("reads");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the owner's state came through node 1");
}

/// What one node caches, another node's change invalidates: event details cached by node 1
/// are fresh on node 1 right after node 0 renames the event — long before they would have
/// expired (5 s) — and `boxoffice cluster status` shows both nodes and who owns what.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_reaches_the_others_caches_and_the_status_shows_every_node() {
    let cluster = Cluster::start(2, &[]).await;
    let organizer = cluster.user(Role::Organizer).await;
    let (event, _) = cluster
        .event_on_sale(&cluster.nodes[0].url(""), &organizer, 10)
        .await;
    let name_on = |i: usize| {
        let url = cluster.nodes[i].url(&format!("/events/{event}"));
        let client = cluster.client.clone();
        async move {
            let body: serde_json::Value =
                client.get(url).send().await.unwrap().json().await.unwrap();
            body["data"]["eventName"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(name_on(1).await, "Cluster night");
    let cached_at = std::time::Instant::now();
    assert_eq!(
        name_on(1).await,
        "Cluster night",
        "served from node 1's cache"
    );
    let renamed = cluster
        .client
        .patch(cluster.nodes[0].url(&format!("/events/{event}")))
        .bearer_auth(&organizer)
        .json(&serde_json::json!({"eventName": "Renamed night"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    crate::support::eventually(
        Duration::from_secs(30),
        "node 1 shows the new name",
        || async { name_on(1).await == "Renamed night" },
    )
    .await;
    // Cached entries live 5 s: seeing the change sooner means node 1 was told.
    assert!(
        cached_at.elapsed() < Duration::from_secs(5),
        "node 1 saw the change only when its entry expired ({:?})",
        cached_at.elapsed()
    );

    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(["cluster", "status", "--json"])
        .env("DATABASE_URL", cluster.db.url())
        .output()
        .await
        .unwrap();
    assert!(status.status.success());
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["liveNodes"], 2, "{report}");
    let nodes = report["nodes"].as_array().unwrap();
    let owned: i64 = nodes
        .iter()
        .map(|n| n["eventsOwned"].as_i64().unwrap())
        .sum();
    assert_eq!(owned, 1, "{report}");
    assert!(nodes
        .iter()
        .any(|n| n["nodeId"] == "node-0" && n["eventsOwned"] == 1 && n["leaseHeld"] == true));
}
