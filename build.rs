//! The SQL migrations are embedded in the binary at compile time (`sqlx::migrate!` in src/migrate.rs); without
//! this, cargo would not notice a new or changed file in `migrations/` and keep serving the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
