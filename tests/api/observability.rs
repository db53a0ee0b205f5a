//! The metrics the dashboards promise are the metrics the engine exports, and their labels
//! stay bounded however many events and ids are requested.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::helpers::{data, spawn_app_with, test_settings, TestApp};

/// One scraped series: name and label names → values.
type Series = (String, BTreeMap<String, String>);

fn parse_scrape(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (head, _value) = line.rsplit_once(' ').expect("name value");
            match head.split_once('{') {
                None => (head.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let labels = rest.trim_end_matches('}');
                    let mut map = BTreeMap::new();
                    // Label values here never contain '",' so a simple split is enough.
                    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        map.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (name.to_string(), map)
                }
            }
        })
        .collect()
}

/// Labels the scrape configuration gives each target: `node`, one per engine node.
const TARGET_LABELS: &[&str] = &["node"];

#[test]
fn the_scrape_configuration_labels_every_node_it_scrapes() {
    let config = std::fs::read_to_string(format!(
        "{}/dashboards/prometheus.yml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let targets = config.matches("- targets:").count();
    assert!(targets >= 1);
    for label in TARGET_LABELS {
        assert_eq!(
            config.matches(&format!("labels: {{{label}: ")).count(),
            targets,
            "every target carries `{label}`"
        );
    }
}

/// Every expression of a dashboard file.
fn dashboard_exprs(file: &str) -> Vec<String> {
    let path = format!("{}/dashboards/{file}", env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        // Row panels group the others and query nothing.
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(!exprs.is_empty());
    exprs
}

/// Metric names in an expression, with the label names its selector names.
fn metrics_in(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("boxoffice_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = BTreeSet::new();
        if tail[end..].starts_with('{') {
            let close = tail[end..].find('}').unwrap();
            for matcher in tail[end + 1..end + close].split(',') {
                let label: String = matcher
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                labels.insert(label);
            }
        }
        found.push((name, labels));
        rest = &tail[end..];
    }
    found
}

/// Label names of every `by (...)` in an expression.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let tail = &rest[at + 4..];
        let close = tail.find(')').unwrap();
        for l in tail[..close].split(',') {
            labels.insert(l.trim().to_string());
        }
        rest = &tail[close..];
    }
    labels
}

/// Drives a bit of everything: sign-ins, an event, holds granted and refused, a booking and
/// its jobs, cached reads, a crashed actor rebuilt.
async fn exercise(app: &TestApp) {
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 4, 2, 2, 4).await;
    let path = format!("/events/{event_id}/reservations");
    let hold = data(
        app.post(
            &path,
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 2}),
        )
        .await,
    )
    .await;
    app.post(
        &path,
        Some(&buyer),
        json!({"type": "GENERAL", "sectionId": general, "quantity": 3}),
    )
    .await; // limit
    let (_, other) = app.user("CUSTOMER").await;
    app.post(
        &path,
        Some(&other),
        json!({"type": "GENERAL", "sectionId": general, "quantity": 3}),
    )
    .await; // sold out
    app.post(
        &path,
        Some(&other),
        json!({"type": "BEST_AVAILABLE", "sectionId": reserved, "quantity": 2}),
    )
    .await;
    let booked = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [hold["id"]]}),
        )
        .await;
    assert_eq!(booked.status(), 201);
    for _ in 0..2 {
        app.get(&format!("/events/{event_id}")).await;
        app.get("/events").await;
    }
    app.get(&format!("/events/{event_id}/inventory")).await;
    app.get("/no/such/route").await;
    assert!(app.engine.kill_actor(event_id));
    // The next request rebuilds the actor (up to 30 s on a busy machine).
    for _ in 0..1500 {
        if app
            .get(&format!("/events/{event_id}/inventory"))
            .await
            .status()
            == 200
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.post(
        &path,
        Some(&other),
        json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
    )
    .await;
    // A waiting room: a buyer joins, is let in, holds (the queue's series).
    let (queued, queued_floor, _) = app.event_on_sale(&organizer, 4, 1, 1, 4).await;
    let r = app
        .patch(
            &format!("/events/{queued}"),
            &organizer,
            json!({"waitingRoom": {"enabled": true, "admitPerMinute": 600_000}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let joined = app
        .post(&format!("/events/{queued}/queue"), Some(&other), json!({}))
        .await;
    assert_eq!(joined.status(), 200);
    for _ in 0..1500 {
        let me = data(
            app.get_as(&format!("/events/{queued}/queue/me"), &other)
                .await,
        )
        .await;
        if me["status"] == "ADMITTED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let held = app
        .post(
            &format!("/events/{queued}/reservations"),
            Some(&other),
            json!({"type": "GENERAL", "sectionId": queued_floor, "quantity": 1}),
        )
        .await;
    assert_eq!(held.status(), 201, "let in, then held");
    // Let the job worker deliver the booking's jobs (up to 30 s on a busy machine).
    for _ in 0..600 {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'PENDING'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_dashboard_queries_is_exported_with_its_labels() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    // A Redis that does not answer: the cache-error series must exist too.
    settings.redis_url = Some(boxoffice::config::Secret::new("redis://127.0.0.1:1"));
    let app = spawn_app_with(db, settings).await;
    exercise(&app).await;
    let scrape = parse_scrape(&app.get("/metrics").await.text().await.unwrap());

    let mut checked = 0;
    for file in ["onsale-overview.json", "engine-internals.json"] {
        for expr in dashboard_exprs(file) {
            let grouped = grouping_labels(&expr);
            for (metric, selected) in metrics_in(&expr) {
                let series: Vec<&BTreeMap<String, String>> = scrape
                    .iter()
                    .filter(|(n, _)| *n == metric)
                    .map(|(_, l)| l)
                    .collect();
                assert!(
                    !series.is_empty(),
                    "{file}: `{metric}` is not exported (query: {expr})"
                );
                let mut needed: BTreeSet<String> = selected.union(&grouped).cloned().collect();
                // Labels Prometheus attaches to every series of a target (prometheus.yml),
                // never in the node's own scrape.
                for target_label in TARGET_LABELS {
                    needed.remove(*target_label);
                }
                if !metric.ends_with("_bucket") {
                    needed.remove("le");
                }
                assert!(
                    series
                        .iter()
                        .any(|labels| needed.iter().all(|l| labels.contains_key(l))),
                    "{file}: `{metric}` has no series with labels {needed:?} (query: {expr})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "checked {checked} metric uses");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn label_values_stay_bounded_across_many_events_and_ids() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let settings = test_settings(&db);
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(app.event_on_sale(&organizer, 10, 1, 2, 8).await);
    }
    let round = |ids: std::ops::Range<i64>| {
        let app = &app;
        let buyer = buyer.clone();
        let events = events.clone();
        async move {
            for id in ids {
                app.get(&format!("/events/{id}")).await;
                app.get(&format!("/events/{id}/inventory")).await;
                app.get_as(&format!("/reservations/{id}"), &buyer).await;
                app.get_as(&format!("/bookings/BX-{id:016}"), &buyer).await;
                app.get(&format!("/random/path/{id}")).await;
            }
            for (event_id, general, _) in &events {
                app.post(
                    &format!("/events/{event_id}/reservations"),
                    Some(&buyer),
                    json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
                )
                .await;
            }
        }
    };
    app.get("/metrics").await; // so that the scrape's own series exists in both
    round(1..40).await;
    let first = parse_scrape(&app.get("/metrics").await.text().await.unwrap());
    round(1000..1040).await;
    let second = parse_scrape(&app.get("/metrics").await.text().await.unwrap());

    let ours = |s: &Vec<Series>| -> BTreeSet<String> {
        s.iter()
            .filter(|(n, _)| n.starts_with("boxoffice_") && !n.ends_with("_bucket"))
            .map(|(n, l)| format!("{n}{l:?}"))
            .collect()
    };
    assert_eq!(ours(&first), ours(&second), "forty new ids added no series");
    for (name, labels) in second.iter().filter(|(n, _)| n.starts_with("boxoffice_")) {
        for (label, value) in labels {
            assert!(
                !label.contains("id") && label != "path",
                "{name} has an unbounded label {label}"
            );
            if label == "route" {
                assert!(value == "unmatched" || value.starts_with('/'), "{value}");
                assert!(
                    !value.chars().any(|c| c.is_ascii_digit()),
                    "{name}: route {value} carries an id"
                );
            }
        }
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn answers_from_every_layer_are_counted_under_their_route() {
    let app = crate::helpers::spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let huge = app
        .post_oversized(&format!("/events/{event_id}/reservations"), &organizer)
        .await;
    assert_eq!(huge.status(), 413);
    let unauthorized = app.get("/auth/me").await;
    assert_eq!(unauthorized.status(), 401);
    let scrape = app.get("/metrics").await.text().await.unwrap();
    for (route, status) in [("/events/{id}/reservations", "413"), ("/auth/me", "401")] {
        assert!(
            scrape
                .lines()
                .any(|l| l.starts_with("boxoffice_http_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))),
            "{status} on {route} is counted"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn outcome_counters_count_refusals_made_before_the_engine() {
    let app = crate::helpers::spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let path = format!("/events/{event_id}/reservations");
    // A malformed body, a quantity out of range, no token: none reaches the engine.
    let bad = app
        .post(
            &path,
            Some(&organizer),
            serde_json::json!({"type": "GENERAL"}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let too_many = app
        .post(
            &path,
            Some(&organizer),
            serde_json::json!({"type": "GENERAL", "sectionId": general, "quantity": 1000}),
        )
        .await;
    assert_eq!(too_many.status(), 422);
    let anonymous = app
        .post(
            &path,
            None,
            serde_json::json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
        )
        .await;
    assert_eq!(anonymous.status(), 401);
    let unbookable = app
        .post(
            "/bookings",
            Some(&organizer),
            serde_json::json!({"reservationIds": []}),
        )
        .await;
    assert_eq!(unbookable.status(), 422);
    let scrape = app.get("/metrics").await.text().await.unwrap();
    let value = |series: &str| -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        value("boxoffice_reservations_total{outcome=\"invalid\"}"),
        2.0
    );
    assert_eq!(
        value("boxoffice_reservations_total{outcome=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(value("boxoffice_bookings_total{outcome=\"invalid\"}"), 1.0);
    app.stop().await.unwrap();
}
