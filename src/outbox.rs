//! The background-job worker: delivers the jobs that confirmations and cancellations queue
//! in the `outbox` table (in the same transaction as the booking), with retries and
//! exponential backoff, so the request path never waits on a webhook.
//!
//! Jobs are claimed with `FOR UPDATE SKIP LOCKED` and a lease (`next_attempt_at` pushed
//! forward), so several workers or nodes never deliver one job at once, and a worker that
//! dies mid-delivery leaves its jobs to be retried when the lease runs out.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// Jobs claimed per round.
const BATCH_JOBS: i64 = 50;
/// Attempts before a job is marked FAILED.
const MAX_ATTEMPTS: i32 = 8;
/// How long a claimed job is leased to this worker.
const LEASE_SECONDS: i32 = 60;
/// Pause between rounds when nothing was due.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Where jobs go.
#[derive(Clone)]
pub struct Delivery {
    /// The webhook; `None` logs each job instead.
    pub webhook_url: Option<String>,
    pub client: reqwest::Client,
}

/// How long one delivery attempt may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

impl Delivery {
    /// Delivery to `webhook_url` over HTTP or HTTPS. HTTPS receivers are verified against
    /// the system's CA certificates and, when given, the PEM certificates in `extra_ca_pem`.
    pub fn new(webhook_url: Option<String>, extra_ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder().timeout(DELIVERY_TIMEOUT);
        if let Some(pem) = extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                anyhow::anyhow!("OUTBOX_WEBHOOK_CA_FILE holds no valid PEM certificate: {e}")
            })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "OUTBOX_WEBHOOK_CA_FILE holds no PEM certificate"
            );
            for cert in certs {
                client = client.add_root_certificate(cert);
            }
        }
        Ok(Delivery {
            webhook_url,
            client: client.build()?,
        })
    }

    /// Delivery as the settings say (`OUTBOX_WEBHOOK_URL`, `OUTBOX_WEBHOOK_CA_FILE`).
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Self> {
        let pem = match &settings.outbox_webhook_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read OUTBOX_WEBHOOK_CA_FILE {}: {e}", path.display())
            })?),
            None => None,
        };
        Self::new(settings.outbox_webhook_url.clone(), pem.as_deref())
    }

    async fn deliver(
        &self,
        id: i64,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let Some(url) = &self.webhook_url else {
            tracing::info!(job_id = id, kind, %payload, "job delivered to the log (OUTBOX_WEBHOOK_URL is not set)");
            return Ok(());
        };
        let body = serde_json::json!({"id": id, "kind": kind, "payload": payload});
        match self
            .client
            .post(url)
            .header("idempotency-key", format!("outbox-{id}"))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("webhook answered {}", r.status())),
            Err(e) => Err(format!("webhook unreachable: {e}")),
        }
    }
}

/// Seconds before the next attempt after `attempts` failures: 2, 4, 8 … capped at 10 min.
pub fn backoff_seconds(attempts: i32) -> i32 {
    2i32.saturating_pow(attempts.clamp(1, 20) as u32).min(600)
}

/// Runs one round: claims due jobs and delivers them. Returns how many were claimed.
pub async fn run_once(pool: &PgPool, delivery: &Delivery) -> Result<usize, sqlx::Error> {
    let jobs: Vec<(i64, String, serde_json::Value, i32)> = sqlx::query_as(
        "UPDATE outbox SET attempts = attempts + 1,
                           next_attempt_at = now() + $2 * interval '1 second'
         WHERE id IN (SELECT id FROM outbox WHERE status = 'PENDING' AND next_attempt_at <= now()
                      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, kind, payload, attempts",
    )
    .bind(BATCH_JOBS)
    .bind(LEASE_SECONDS)
    .fetch_all(pool)
    .await?;
    for (id, kind, payload, attempts) in &jobs {
        match delivery.deliver(*id, kind, payload).await {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET status = 'DELIVERED', delivered_at = now(), last_error = NULL WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await?;
                metrics::counter!("boxoffice_jobs_total", "result" => "delivered").increment(1);
            }
            Err(error) if *attempts >= MAX_ATTEMPTS => {
                tracing::error!(job_id = id, kind, %error, attempts, "job failed for good");
                sqlx::query("UPDATE outbox SET status = 'FAILED', last_error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(&error)
                    .execute(pool)
                    .await?;
                metrics::counter!("boxoffice_jobs_total", "result" => "failed").increment(1);
            }
            Err(error) => {
                tracing::warn!(job_id = id, kind, %error, attempts, "job delivery failed; will retry");
                sqlx::query(
                    "UPDATE outbox SET last_error = $2, next_attempt_at = now() + $3 * interval '1 second' WHERE id = $1",
                )
                .bind(id)
                .bind(&error)
                .bind(backoff_seconds(*attempts))
                .execute(pool)
                .await?;
                metrics::counter!("boxoffice_jobs_total", "result" => "retried").increment(1);
            }
        }
    }
    Ok(jobs.len())
}

/// Runs rounds until `stop` turns true. Finishes the round in progress first.
pub async fn run(pool: PgPool, delivery: Delivery, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let pending: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'PENDING'")
                .fetch_one(&pool)
                .await;
        if let Ok(pending) = pending {
            metrics::gauge!("boxoffice_jobs_pending").set(pending as f64);
        }
        let claimed = match run_once(&pool, &delivery).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "outbox round failed");
                0
            }
        };
        if claimed == 0 {
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(super::backoff_seconds(1), 2);
        assert_eq!(super::backoff_seconds(3), 8);
        assert_eq!(super::backoff_seconds(30), 600);
    }
}
