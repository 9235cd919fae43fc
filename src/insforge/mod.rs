//! Talking to InsForge: the token minter signs a short-lived JWT per user, the client calls the records API.

pub mod client;
pub mod minter;
