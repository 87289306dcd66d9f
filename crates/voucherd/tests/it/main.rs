//! The real `voucherd` binary over real TCP: bursts, crashes, shutdown.

mod burst;
mod crash;
mod crowd;
mod database;
mod load;
mod nodes;
mod payments;
mod server;
mod shutdown;
