//! Clients that open a connection, send part of a request header and then nothing are
//! closed once HEADER_TIMEOUT_MS runs out, and buyers keep being served while thousands of
//! them hold connections open (slowloris). Real sockets against the real binary.

use std::time::Duration;

use boxoffice_engine::testdb::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{client_builder, free_port, scene, Server};

/// Stalled connections to open: as many as the issue measured, or fewer where the
/// descriptor limit (which the server inherits) is lower — always under the server's
/// default `MAX_CONNECTIONS`, so that buyers are never left in the backlog behind them.
fn stalled_wanted() -> usize {
    12_000.min(boxoffice::config::default_max_connections().saturating_sub(256))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_are_closed_and_buyers_are_served_throughout() {
    let db = TestDb::create().await;
    let port = free_port();
    let server = Server::start_with(&db.url(), port, &[("HEADER_TIMEOUT_MS", "4000")]).await;
    // 40 buyers of at most 1,000 tickets each; each stops short of its limit.
    let scene = scene(&db, &server.url(""), 40, 1_000_000, 1_000).await;

    // Buyers keep holding, one request after another, until told to stop (or near their
    // limit: the server is then still serving the others).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut buyers = Vec::new();
    for (_, token) in scene.buyers.clone() {
        let (stop, url) = (
            stop.clone(),
            server.url(&format!("/events/{}/reservations", scene.event_id)),
        );
        let section_id = scene.section_id;
        buyers.push(tokio::spawn(async move {
            // The server here closes idle connections after 4 s; the client retires them
            // after 1 s (see `client_builder`).
            let client = client_builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok < 990 {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }

    let wanted = stalled_wanted();
    assert!(
        wanted >= 256,
        "this machine allows too few sockets for the test"
    );
    let mut stalled = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"POST /events/1/reservations HTTP/1.1\r\nHost: boxoffice\r\nContent-Le")
            .await
            .unwrap();
        stalled.push(s);
    }
    // Every stalled connection is closed by the server (EOF or reset), none by us. A busy
    // machine may take long to get through them all; the bound only catches a server that
    // never closes them (the old one kept them for as long as the client liked).
    let closed = futures::future::join_all(stalled.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue, // a 408 or similar before the close
                Err(_) => return false,
            }
        }
    }))
    .await;
    let closed = closed.into_iter().filter(|c| *c).count();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for buyer in buyers {
        let (ok, failed) = buyer.await.unwrap();
        assert!(
            failed.is_empty(),
            "buyers were refused or cut off: {failed:?}"
        );
        served += ok;
    }
    assert_eq!(
        closed, wanted,
        "every stalled connection was closed by the server"
    );
    assert!(
        served > 0,
        "buyers were served while the connections stalled"
    );
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let timed_out: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("boxoffice_http_connections_timed_out_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(
        timed_out >= wanted as f64,
        "{timed_out} timed out of {wanted}"
    );
}
