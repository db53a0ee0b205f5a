//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not know the macro
//! read those files: without this, a new or edited migration reaches the binary only when
//! something else in this crate changes (sqlx's advice: `sqlx migrate build-script`).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
