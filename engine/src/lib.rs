//! Red Cloud's rules core.
//!
//! Events and instants go in; notification intents come out. Architecture
//! invariant: this crate does no I/O, starts no threads or runtimes and reads no
//! clock. Time is passed in with every call, so `redcloud replay` and the daemon
//! run the same code and every behaviour can be tested with simulated time.

#![warn(missing_docs)]

pub mod calendar;
pub mod dedup;
pub mod directory;
pub mod engine;
pub mod event;
pub mod fasthash;
pub mod intern;
pub mod notify;
pub mod policy;
pub mod records;
pub mod snapshot;
pub mod streak;
pub mod time;
pub mod timer;

pub use engine::{Counters, Engine, MemberView, Outcome, TicketView};
pub mod ticket;
