//! Byte frames over MPI point-to-point messages, and the polite wait between polls.
//!
//! Every rank runs two threads that call MPI (a receiver and a sender), so MPI is started
//! with `MPI_THREAD_MULTIPLE`. Two threads are what keeps large messages from deadlocking:
//! a blocking send of a big job to a rank that is itself blocked sending big results back
//! completes because the other thread on each side is still receiving.

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};

use crate::sys::wait::{self, Spin};
use mpi::topology::{Communicator, SimpleCommunicator};

/// Sends one frame to `rank` (blocks until MPI has taken the buffer).
pub(crate) fn send(world: &SimpleCommunicator, rank: i32, tag: i32, frame: &[u8]) {
    world.process_at_rank(rank).send_with_tag(frame, tag);
}

/// A frame with this tag from `rank` (any rank if `None`), if one has arrived.
pub(crate) fn try_recv(
    world: &SimpleCommunicator,
    rank: Option<i32>,
    tag: i32,
) -> Option<(i32, Vec<u8>)> {
    let probed = match rank {
        Some(r) => world
            .process_at_rank(r)
            .immediate_matched_probe_with_tag(tag),
        None => world.any_process().immediate_matched_probe_with_tag(tag),
    }?;
    let (bytes, status) = probed.matched_receive_vec::<u8>();
    Some((status.source_rank(), bytes))
}

/// Waits for a frame from `rank`, polling politely, for at most `timeout`.
pub(crate) fn recv_timeout(
    world: &SimpleCommunicator,
    rank: i32,
    tag: i32,
    timeout: Duration,
) -> Option<Vec<u8>> {
    let end = Instant::now() + timeout;
    let mut idle = Backoff::new();
    loop {
        if let Some((_, b)) = try_recv(world, Some(rank), tag) {
            return Some(b);
        }
        if Instant::now() >= end {
            return None;
        }
        idle.wait();
    }
}

/// Between two empty polls: the crate's one spin (`sys::wait`: `spin_loop` hints for some
/// tens of µs, while a message usually follows within microseconds as work streams; then
/// yields, to 2 ms in all, and none at all on a crowded CPU), then sleeps in growing steps
/// up to 1 ms, so an idle rank costs almost no CPU (MPI's own blocking receive would spin
/// at 100 %, which on an oversubscribed machine starves the workers doing the tasks). MPI
/// gives no word to sleep on, so this is the one wait in the crate that polls.
pub(crate) struct Backoff {
    spin: wait::Backoff,
    sleep: Duration,
}

/// A poll after every hint for 1,024 hints (a message is seen the moment it lands), then
/// yields until the spin's time is up.
const POLL: Spin = Spin {
    spins: 1024,
    rounds: u32::MAX,
    grow: false,
};

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            spin: wait::Backoff::new(POLL, None),
            sleep: Duration::from_micros(20),
        }
    }

    /// Something arrived: the next wait starts from a spin again.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }

    pub(crate) fn wait(&mut self) {
        if !self.spin.snooze() {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(Duration::from_millis(1));
        }
    }
}

/// This rank's host name, as MPI names it.
pub(crate) fn host() -> String {
    mpi::environment::processor_name().unwrap_or_else(|_| "<unknown host>".into())
}

/// The world communicator, for a thread of its own (the handle is not `Send`).
pub(crate) fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

/// This rank and the size of the world.
pub(crate) fn rank_and_size(world: &SimpleCommunicator) -> (i32, i32) {
    (world.rank(), world.size())
}

/// A frame on the start-up tag from `rank`, blocking inside MPI: the bare round trip the
/// benchmark compares against.
pub(crate) fn recv_any_blocking(world: &SimpleCommunicator, rank: i32) -> (Vec<u8>, i32) {
    let (b, status) = world
        .process_at_rank(rank)
        .receive_vec_with_tag::<u8>(crate::mpi::wire::TAG_START);
    (b, status.source_rank())
}
