//! The integration tests: one binary, so one link step and one throwaway PostgreSQL cluster serve them all (see
//! `helpers`). Each file specifies one feature. The stand-ins' own tests live with them, in `crates/standins/tests`.

mod helpers;

// The data path: migrations, RLS, the InsForge client.
mod hostile_values;
mod insforge_client;
mod migrate_command;
mod migrations;
mod rls;

// Signing in with WorkOS, and what attackers try against it.
mod bearer;
mod cookie_size;
mod hardening;
mod refresh;
mod session;
mod sign_in;

// Signing in with any OpenID Connect provider (Auth0 the example) instead.
mod oidc;

// The enterprise lifecycle: webhooks, the Events API, deprovisioning.
mod database_outage;
mod deprovisioning;
mod events_consumer;
mod lifecycle_events;
mod lifecycle_startup;
mod organizations;
mod webhooks;

// Organizations: shared todos under RLS, switching, selection at sign-in, the admin portal, impersonation, Audit Logs.
mod admin_portal;
mod audit_logs;
mod impersonation;
mod organization_selection;
mod organization_switching;
mod organization_todos;

// The todo app, and the command that runs it.
mod command_line;
#[cfg(feature = "demo")]
mod demo;
mod logs;
mod metrics;
mod overload;
mod replicas;
mod service;
mod todos_api;
mod todos_pages;
