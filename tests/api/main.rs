//! The integration tests: one binary, so one link step and one throwaway PostgreSQL cluster serve them all (see
//! `helpers`). Each file specifies one feature.

mod helpers;

// The data path: migrations, RLS, the InsForge client and stand-in.
mod hostile_values;
mod insforge_client;
mod insforge_standin;
mod migrate_command;
mod migrations;
mod rls;
mod temp_postgres;

// Signing in with WorkOS.
mod bearer;
mod cookie_size;
mod refresh;
mod session;
mod sign_in;
mod workos_standin;

// The todo app.
mod demo;
mod logs;
mod service;
mod todos_api;
mod todos_pages;
