//! Integration tests: the real binary on fixture folders and the bundled sample data, with a
//! real SQLite snapshot in a temp folder. One test binary (see util.rs for the helpers).

mod util;

mod adhoc;
mod apply;
mod cases;
mod cli;
mod contract;
mod damage;
mod deploy;
mod event;
mod event_storm;
mod explain;
mod hostile;
mod hostile_flags;
mod hostile_server;
mod inputs;
mod layers;
mod operate;
mod optimize;
mod private;
mod readme;
mod redirect;
mod review;
mod sample;
mod trust;
mod undo;
mod verify;
