//! The integration tests: one binary, so one throwaway PostgreSQL cluster serves them all (see `helpers`).

mod helpers;

mod hostile_values;
mod insforge_client;
mod insforge_standin;
mod migrate_command;
mod migrations;
mod rls;
mod temp_postgres;
