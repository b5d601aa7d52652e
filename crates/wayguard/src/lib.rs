//! wayguard: the binary's wiring (command line, sources, serving, admin), also usable
//! in-process by tests.

pub mod admin;
pub mod bootstrap;
pub mod cli;
pub mod driver;
pub mod dump;
pub mod files;
pub mod keys;
pub mod kubernetes;
pub mod pipeline;
pub mod render;
pub mod rotation;
pub mod serve;
pub mod source;
pub mod sources;
pub mod validate;
