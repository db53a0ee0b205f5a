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
