//! End-to-end tests: each one drives the real `ketch` binary (a server process on a free
//! loopback port, and CLI invocations against it).

mod api;
mod bad_input;
mod cli;
mod containers;
mod drain;
mod durability;
mod examples;
mod faults;
mod gateway;
mod ha;
mod ingress_tls;
mod kubectl;
mod linearizability;
mod load;
mod netns;
mod node_failure;
mod pod_security;
mod rbac;
mod registry;
mod secrets;
mod security;
mod services;
mod support;
mod watch;
mod watch_validator;
mod workloads;
