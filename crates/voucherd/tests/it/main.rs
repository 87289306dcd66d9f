//! The real `voucherd` binary over real TCP: bursts, crashes, shutdown.

mod burst;
mod crash;
mod load;
mod server;
mod shutdown;
