//! A node that dies or is paused: its events go to another node within seconds, and nothing
//! acknowledged is lost — what the old owner still tries to write is refused by the fence.

use std::time::{Duration, Instant};

use boxoffice::auth::jwt::Role;

use crate::support::{client_builder, eventually, signal, Cluster, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_owner_of_a_hot_event_moves_it_within_seconds_and_loses_nothing() {
    let mut cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(32).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    // A seated section too, sold in best-available pairs: no seat may be sold twice.
    let stalls: serde_json::Value = cluster
        .client
        .post(cluster.front(&format!("/events/{event}/sections")))
        .bearer_auth(&organizer)
        .json(&serde_json::json!({"name": "Stalls", "type": "RESERVED", "rows": 40, "seatsPerRow": 50, "priceCents": 2000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stalls = stalls["data"]["id"].as_i64().expect("a seated section");
    let owner = cluster.owner(event).await.expect("claimed");
    let victim = cluster.index_of(&owner);

    // 32 buyers hold through HAProxy, each hold with a key of its own, retrying with it
    // while the answer is unknown: 24 take one general ticket at a time, 8 a pair of seats.
    // HAProxy answers 502 for a request the killed node had taken and never answered:
    // unknown, and retried like a 503.
    let (general, seated) = tokens.split_at(24);
    let load = Load::start_tolerating(
        cluster.front(""),
        general.to_vec(),
        event,
        serde_json::json!({"type": "GENERAL", "sectionId": section, "quantity": 1}),
        true,
    );
    let pairs = Load::start_tolerating(
        cluster.front(""),
        seated.to_vec(),
        event,
        serde_json::json!({"type": "BEST_AVAILABLE", "sectionId": stalls, "quantity": 2}),
        true,
    );
    load.until_more(200, "the burst got going").await;
    pairs.until_more(20, "pairs of seats were held").await;
    // kill -9 the owner in the middle of the burst.
    let killed_at = Instant::now();
    cluster.kill_node(victim).await;
    let recovered = load.recovered_after(killed_at).await;
    load.until_more(200, "holds kept being acknowledged").await;
    pairs.until_more(20, "pairs kept being held").await;
    let (mut acked, _) = load.stop().await;
    let (pairs_acked, _) = pairs.stop().await;
    let pairs_acked_count = pairs_acked.len();
    acked.extend(pairs_acked);
    eprintln!("failover: first 201 through HAProxy {recovered:?} after kill -9 of {owner}");
    // The target is 5 s (README, measured over ten kills: `failover_time_over_ten_kills`);
    // this bound is twice that, so a busy CI machine cannot fail it while a broken
    // failover still does.
    assert!(
        recovered < Duration::from_secs(10),
        "the event answered again {recovered:?} after the kill"
    );

    // Another node owns it now, and every acknowledged hold is in PostgreSQL, once.
    let new_owner = cluster.owner(event).await.expect("claimed again");
    assert_ne!(new_owner, owner);
    cluster.assert_all_stored(event, &acked).await;
    // Every held seat is held once: as many seats taken as pairs acknowledged, times two.
    let seats_taken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats WHERE section_id = $1 AND status <> 'AVAILABLE'",
    )
    .bind(stalls)
    .fetch_one(&cluster.db.pool)
    .await
    .unwrap();
    let seated_holds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations_effective WHERE section_id = $1 AND status = 'ACTIVE'",
    )
    .bind(stalls)
    .fetch_one(&cluster.db.pool)
    .await
    .unwrap();
    assert!(pairs_acked_count > 0);
    assert_eq!(seats_taken, 2 * seated_holds, "no seat in two holds");
}

/// Whether a backend of `application` is open in PostgreSQL, optionally only in `state`.
async fn backends(cluster: &Cluster, application: &str, wait_event_type: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE application_name = $1 AND ($2::text IS NULL OR wait_event_type = $2)",
    )
    .bind(application)
    .bind(wait_event_type)
    .fetch_one(&cluster.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_off_when_it_wakes_after_another_node_claimed() {
    // Node 0 gets one engine connection, and time enough to wait for it: so that a batch can
    // be decided and waiting for its flush when the node is paused (see below).
    let cluster = Cluster::start(
        2,
        &[
            ("ENGINE_DB_CONNECTIONS", "1"),
            ("ENGINE_FLUSH_TIMEOUT_MS", "120000"),
            ("ENGINE_CALL_TIMEOUT_MS", "120000"),
            ("REQUEST_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    let organizer = cluster.user(Role::Organizer).await;
    let buyers = cluster.buyers(4).await;
    let a = cluster.nodes[0].url("");
    let (e1, s1) = cluster.event_on_sale(&a, &organizer, 100).await;
    let (e2, s2) = cluster.event_on_sale(&a, &organizer, 100).await;
    assert_eq!(cluster.owner(e2).await.as_deref(), Some("node-0"));
    let patient = client_builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let hold = |base: String, token: String, event: i64, section: i64, key: String| {
        let patient = patient.clone();
        tokio::spawn(async move {
            patient
                .post(format!("{base}/events/{event}/reservations"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&serde_json::json!({"type": "GENERAL", "sectionId": section, "quantity": 1}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };

    // Event 1's row is locked here, so node 0's flush for it holds the node's one
    // connection, waiting. Event 2's holds are then decided and wait for that connection.
    let mut lock = cluster.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .bind(e1)
        .execute(&mut *lock)
        .await
        .unwrap();
    let e1_hold = hold(a.clone(), buyers[0].clone(), e1, s1, "e1-a".into());
    eventually(
        Duration::from_secs(30),
        "node 0's flush waits on the lock",
        || async { backends(&cluster, "boxoffice node-0", Some("Lock")).await == 1 },
    )
    .await;
    let e2_keys: Vec<String> = (0..3).map(|i| format!("e2-a{i}")).collect();
    let e2_holds: Vec<_> = e2_keys
        .iter()
        .enumerate()
        .map(|(i, key)| hold(a.clone(), buyers[i + 1].clone(), e2, s2, key.clone()))
        .collect();
    eventually(
        Duration::from_secs(30),
        "node 0 decided event 2's holds",
        || async {
            let inventory: serde_json::Value = cluster
                .client
                .get(format!("{a}/events/{e2}/inventory"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            inventory["data"]["held"] == 3
        },
    )
    .await;

    // Pause node 0 past its lease; node 1 claims event 2.
    let paused = cluster.nodes[0].pid();
    signal(paused, "STOP");
    eventually(
        Duration::from_secs(30),
        "node 0's lease ran out",
        || async {
            sqlx::query_scalar::<_, bool>(
            "SELECT lease_until < clock_timestamp() FROM cluster_nodes WHERE node_id = 'node-0'",
        )
        .fetch_one(&cluster.db.pool)
        .await
        .unwrap()
        },
    )
    .await;
    let claimed = cluster
        .hold(&cluster.nodes[1].url(""), &buyers[0], e2, s2, "e2-b")
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), 201, "node 1 claimed event 2 and sold");
    assert_eq!(cluster.owner(e2).await.as_deref(), Some("node-1"));

    // Event 1's lock goes. Node 0's flush for it is one statement
    // (`write_behind::one_statement`): PostgreSQL finishes and commits it without the paused
    // node, under event 1's epoch, still node 0's (nobody claimed event 1). The paused node
    // holds no lock: the event row is free at once for anyone else.
    lock.rollback().await.unwrap();
    eventually(
        Duration::from_secs(30),
        "event 1's batch committed while its node was paused",
        || async { cluster.stored_keys(e1, &["e1-a".into()]).await.len() == 1 },
    )
    .await;
    let mut free = cluster.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE NOWAIT")
        .bind(e1)
        .execute(&mut *free)
        .await
        .expect("the paused node holds no lock on event 1");
    free.rollback().await.unwrap();

    // Node 0 wakes. Its event 2 batch gets the connection back and tries to write under
    // the old epoch: refused by the fence. Every hold it had decided is answered 503.
    signal(paused, "CONT");
    // Event 1's batch committed: its hold is answered 201 once the node runs again.
    assert_eq!(e1_hold.await.unwrap(), 201);
    // Event 2's first batch — the one waiting for the connection — is written under the old
    // epoch and refused by the fence: its holds are answered 503. Holds decided after it
    // were still in the actor's open batch, dropped with the actor unwritten; the engine
    // sends those again, now to the owner, which may grant them. Either way each hold is
    // stored exactly when it was acknowledged.
    let mut e2_answers = Vec::new();
    for (h, key) in e2_holds.into_iter().zip(&e2_keys) {
        e2_answers.push((key.clone(), h.await.unwrap()));
    }
    assert!(
        e2_answers.iter().all(|(_, s)| *s == 201 || *s == 503),
        "{e2_answers:?}"
    );
    assert!(
        e2_answers.iter().any(|(_, s)| *s == 503),
        "the fenced batch's holds were refused: {e2_answers:?}"
    );
    eventually(
        Duration::from_secs(30),
        "the fence refused the batch",
        || async {
            cluster
                .counter(0, "boxoffice_cluster_fenced_flushes_total", "")
                .await
                >= 1.0
        },
    )
    .await;
    // It dropped the actor, and nothing it tried to write exists.
    eventually(
        Duration::from_secs(30),
        "node 0 dropped event 2",
        || async { !cluster.live_events(0).await.contains(&e2) },
    )
    .await;
    for (key, status) in &e2_answers {
        let stored = cluster
            .stored_keys(e2, std::slice::from_ref(key))
            .await
            .len();
        assert_eq!(
            stored,
            usize::from(*status == 201),
            "hold {key} answered {status}"
        );
    }
    assert_eq!(cluster.stored_keys(e1, &["e1-a".into()]).await.len(), 1);
    assert_eq!(cluster.stored_keys(e2, &["e2-b".into()]).await.len(), 1);
    assert_eq!(cluster.owner(e2).await.as_deref(), Some("node-1"));
    cluster.assert_invariants(e1).await;
    cluster.assert_invariants(e2).await;

    // Back as a new incarnation, node 0 sends event 2's requests to node 1.
    eventually(Duration::from_secs(30), "node 0 rejoined", || async {
        cluster
            .view(0)
            .await
            .is_some_and(|v| v["incarnation"].is_i64())
    })
    .await;
    let forwarded = cluster
        .hold(&a, &buyers[3], e2, s2, "e2-after")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 201);
    assert_eq!(cluster.owner(e2).await.as_deref(), Some("node-1"));
}

/// The failover time README reports: ten times, `kill -9` of the node that owns a hot event
/// while buyers hold through HAProxy, timed to the first 201 acknowledged after the kill;
/// the killed node is restarted before the next round. Run on demand (a minute):
/// `cargo nextest run --run-ignored only --no-capture -E 'test(failover_time)'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run on demand"]
async fn failover_time_over_ten_kills() {
    let mut cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(16).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    let load = Load::start_tolerating(
        cluster.front(""),
        tokens,
        event,
        serde_json::json!({"type": "GENERAL", "sectionId": section, "quantity": 1}),
        true,
    );
    let mut times = Vec::new();
    for round in 0..10 {
        load.until_more(100, "holds are acknowledged").await;
        let owner = cluster.owner(event).await.expect("owned");
        let victim = cluster.index_of(&owner);
        let killed_at = Instant::now();
        cluster.kill_node(victim).await;
        let took = load.recovered_after(killed_at).await;
        eprintln!("round {round}: kill -9 {owner}, first 201 after {took:?}");
        times.push(took);
        cluster.start_node(victim).await;
    }
    let (acked, _) = load.stop().await;
    cluster.assert_all_stored(event, &acked).await;
    times.sort();
    eprintln!(
        "failover over 10 kills: median {:?}, worst {:?} (lease {} ms)",
        (times[4] + times[5]) / 2,
        times[9],
        boxoffice_engine::cluster::ClusterConfig::default().lease_ms
    );
}

/// Every buyer's place and pass, by user: `(user_id, rank, admitted_at, pass_expires_at)`,
/// times in epoch seconds.
async fn queue_rows(
    cluster: &Cluster,
    event: i64,
) -> Vec<(i64, Option<i32>, Option<f64>, Option<f64>)> {
    sqlx::query_as(
        "SELECT user_id, rank, extract(epoch FROM admitted_at)::float8,
                extract(epoch FROM pass_expires_at)::float8
         FROM queue_entries WHERE event_id = $1 ORDER BY user_id",
    )
    .bind(event)
    .fetch_all(&cluster.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_moves_with_its_event_and_keeps_every_place_and_pass() {
    let mut cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(60).await;
    let (event, _) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 10_000)
        .await;
    // One buyer a second, passes for two hours: the line is mid-way when the owner dies (the
    // 60 places are read in the 50 s the last 50 buyers take to be let in, however busy the
    // machine).
    let r = cluster
        .client
        .patch(cluster.front(&format!("/events/{event}")))
        .bearer_auth(&organizer)
        .json(&serde_json::json!({"waitingRoom": {"enabled": true, "admitPerMinute": 60, "passTtlSeconds": 7200}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for token in &tokens {
        let r = cluster
            .client
            .post(cluster.front(&format!("/events/{event}/queue")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (client, url) = (
        cluster.client.clone(),
        cluster.front(&format!("/events/{event}/queue/me")),
    );
    let place = |token: String| {
        let request = client.get(&url).bearer_auth(token);
        async move {
            let r = request.send().await.ok()?;
            (r.status() == 200).then_some(())?;
            let body: serde_json::Value = r.json().await.ok()?;
            Some(body["data"].clone())
        }
    };
    // Wait until some are let in and some still wait.
    eventually(Duration::from_secs(60), "buyers were let in", || async {
        place(tokens[9].clone())
            .await
            .is_some_and(|v| v["status"] == "ADMITTED")
    })
    .await;
    let mut seen = Vec::new();
    for token in &tokens {
        seen.push(place(token.clone()).await.expect("a place"));
    }
    assert!(seen.iter().any(|v| v["status"] == "WAITING"), "mid-way");
    let owner = cluster.owner(event).await.expect("claimed");
    let victim = cluster.index_of(&owner);
    cluster.kill_node(victim).await;
    let before = queue_rows(&cluster, event).await;

    // Through HAProxy, another node claims the event and answers every buyer as before.
    eventually(
        Duration::from_secs(60),
        "another node answers for the line",
        || async { place(tokens[0].clone()).await.is_some() },
    )
    .await;
    let new_owner = cluster.owner(event).await.expect("claimed again");
    assert_ne!(new_owner, owner, "the event moved");
    let after = queue_rows(&cluster, event).await;
    assert_eq!(after.len(), tokens.len());
    for (was, now) in before.iter().zip(&after) {
        assert_eq!((was.0, was.1), (now.0, now.1), "a buyer's place");
        if was.2.is_some() {
            assert_eq!((was.2, was.3), (now.2, now.3), "a buyer's pass");
        }
    }
    for (token, view) in tokens.iter().zip(&seen) {
        let again = place(token.clone()).await.expect("a place");
        assert_eq!(again["joinedAt"], view["joinedAt"]);
        if view["status"] == "ADMITTED" {
            assert_eq!(again["status"], "ADMITTED");
            assert_eq!(again["passExpiresAt"], view["passExpiresAt"]);
        }
    }
    cluster.assert_invariants(event).await;
}
