//! The verbs of the command line, one module each: its flags (a `clap::Args` struct that
//! `main.rs`'s `Command` holds) and its `run`. What several verbs share is in [`shared`];
//! the node agent's flags, which `server` and `up` take too, are in [`agent`].

pub mod agent;
pub mod apply;
pub mod auth;
pub mod cluster;
pub mod completion;
pub mod config;
pub mod cordon;
pub mod delete;
pub mod describe;
pub mod drain;
pub mod get;
pub mod logs;
pub mod new;
pub mod push;
pub mod rollout;
pub mod scale;
pub mod server;
pub mod shared;
pub mod token;
pub mod up;
pub mod version;
