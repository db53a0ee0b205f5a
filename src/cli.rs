//! The command line: `serve` (the default), `migrate`, `seed-demo`, `loadtest`, `audit`,
//! `user add`, `cluster status`.

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{shutdown_signal, Application};
use crate::{db, demo, users};

/// boxoffice: a reservation engine for ticket on-sales.
///
/// Configuration comes from environment variables (see README.md).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed, migrate it and serve the HTTP API (the default).
    Serve,
    /// Create the database if needed and migrate it, then exit.
    Migrate,
    /// Seed a demo organizer, buyer (test@example.com / password), venue and an event on
    /// sale with GENERAL and RESERVED sections.
    SeedDemo {
        /// Seed what load-test.yml (the performance guide's Artillery scenario) posts to
        /// instead: event 123 with GENERAL section 1, no per-buyer limit. Needs a fresh
        /// database, since the scenario names fixed ids.
        #[arg(long)]
        artillery: bool,
    },
    /// Drive an on-sale burst against a running server and check the result in PostgreSQL
    /// (needs the server's DATABASE_URL and JWT_SECRET).
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Check an event's invariants (docs/ARCHITECTURE.md) in PostgreSQL; exit 1 on any
    /// violation. For operators, and for load tests run with another generator.
    Audit {
        /// The event to check.
        #[arg(long)]
        event: i64,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The cluster as PostgreSQL records it.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node (its URL, incarnation and lease) and how many
    /// events each owns; exit 1 when no node holds a lease.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or reset the password and role of an existing one.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "CUSTOMER", value_parser = ["CUSTOMER", "ORGANIZER", "ADMIN"])]
        role: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
    },
}

/// Runs the command.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if settings.jwt_secret_generated {
                tracing::warn!(
                    "JWT_SECRET is not set: using a random secret, so every token dies with this \
                     process and no two instances accept each other's tokens. Set JWT_SECRET in production."
                );
            }
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::SeedDemo { artillery } => {
            // Seeding runs an engine of its own: a cluster node of its own for the moment,
            // so that it never takes the place of a server running here with the same id.
            let mut settings = settings;
            settings.engine.cluster.node_id = format!(
                "{}/seed-demo-{}",
                settings.engine.cluster.node_id,
                std::process::id()
            );
            let pool = db::prepare(&settings).await?;
            let engine =
                boxoffice_engine::Engine::start(pool.clone(), settings.engine.clone()).await?;
            let seeded = if artillery {
                demo::seed_artillery(&pool, &engine).await
            } else {
                demo::seed(&pool, &engine).await
            };
            engine.shutdown().await;
            let event_id = seeded?;
            if artillery {
                println!("event {event_id} (GENERAL section {}, {} tickets, no per-buyer limit) is on sale for load-test.yml; buyer test@example.com / password",
                         demo::ARTILLERY_SECTION_ID, demo::ARTILLERY_CAPACITY);
            } else {
                println!("demo event {event_id} is on sale; buyer test@example.com / password, organizer organizer@example.com / organizer-password");
            }
            Ok(())
        }
        Command::Loadtest(args) => crate::loadtest::run(args, settings).await,
        Command::Audit { event } => {
            let pool = db::connect(&settings).await?;
            let found = boxoffice_engine::audit::violations(&pool, event).await?;
            let (holds, tickets): (i64, i64) = sqlx::query_as(
                "SELECT count(*), COALESCE(sum(quantity), 0)::bigint FROM reservations WHERE event_id = $1",
            )
            .bind(event)
            .fetch_one(&pool)
            .await?;
            println!(
                "event {event}: {holds} holds stored ({tickets} tickets), {} invariant violations",
                found.len()
            );
            for v in &found {
                println!("  {v}");
            }
            anyhow::ensure!(found.is_empty(), "event {event} breaks its invariants");
            Ok(())
        }
        Command::Cluster {
            command: ClusterCommand::Status { json },
        } => {
            let pool = db::connect(&settings).await?;
            crate::cluster::status::status(&pool, json).await
        }
        Command::Migrate => {
            db::prepare(&settings).await?;
            tracing::info!(database = %settings.database_url_redacted(), "migrated");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    email,
                    password,
                    role,
                    first_name,
                    last_name,
                },
        } => {
            let pool = db::prepare(&settings).await?;
            let id =
                users::upsert(&pool, &email, &password, &role, &first_name, &last_name).await?;
            println!("user {id} <{email}> is {role}");
            Ok(())
        }
    }
}
