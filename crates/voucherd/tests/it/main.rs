//! The real `voucherd` binary over real TCP: bursts, crashes, shutdown.

mod burst;
mod crash;
mod server;
mod shutdown;
