//! The real `voucherd` binary over real TCP: bursts, crashes, shutdown.

mod admin;
mod burst;
mod crash;
mod crowd;
mod database;
mod failover;
mod faults;
mod kill_loop;
mod load;
mod nodes;
mod pages;
mod payments;
mod server;
mod shutdown;
mod tenancy;
