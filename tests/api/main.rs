//! authbridge's integration tests, in one binary so they share one link step (and, later, one PostgreSQL).

mod workos_standin;
