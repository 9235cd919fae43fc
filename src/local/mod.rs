//! What runs on a developer's machine in place of the real services, for the tests and `authbridge demo`.

pub mod insforge;
pub mod postgres;
pub mod workos;
