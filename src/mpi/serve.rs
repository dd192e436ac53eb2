//! A serving rank's life: check in with rank 0, start the local pool, run the jobs rank 0
//! sends until it says to stop, answer `Bye`.

use std::sync::Arc;

use super::local::{Handled, Out, Server};
use super::wire::{self, Down, Hello, Ready, Start, TAG_DOWN, TAG_START, TAG_UP, Up};
use super::{MpiPoolBuilder, comm};

/// A serving rank's life: check in, start the local pool, run jobs until told to stop.
pub(super) fn serve(
    cfg: &MpiPoolBuilder,
    world: &mpi::topology::SimpleCommunicator,
    rank: i32,
    hello: Hello,
) {
    // A serving rank only passes messages on between MPI and its local pool, polling with
    // short sleeps: a short slice lets each wake-up run at once beside a busy CPU (see
    // `sys::sched`). Its pool's dispatcher inherits it; its workers, forked by the fork
    // server, keep the default for the user's tasks.
    crate::sys::sched::short_slices();
    comm::send(world, 0, TAG_START, &wire::frame(&hello, &[]));
    // Rank 0 answers at once unless it is slow to start: wait for it, politely, but not
    // forever (a rank 0 that never answers has died, and then mpirun ends the job).
    let answer = comm::recv_timeout(world, 0, TAG_START, cfg.start_timeout * 2);
    match answer.as_deref().and_then(wire::unframe::<Start>) {
        Some((Start::Go, _)) => {}
        Some((Start::Abort(_), _)) => return,
        None => {
            eprintln!("multiproc: MPI rank {rank}: rank 0 did not start the pool; giving up");
            return;
        }
    }
    if cfg.bench_pings > 0 && rank == 1 {
        for _ in 0..cfg.bench_pings {
            let (b, _) = comm::recv_any_blocking(world, 0);
            comm::send(world, 0, TAG_START, &b);
        }
    }
    // Results go to rank 0 straight from the thread that has them (the local pool's
    // dispatcher): no hand-over to another thread. This cannot deadlock: rank 0's receiver
    // thread is always receiving, and this rank's main thread is, too.
    let out: Out = Arc::new(|frame| comm::send(&comm::world(), 0, TAG_UP, &frame));
    let server = Server::start(&cfg.local, out.clone());
    let ready = Ready {
        workers: match &server {
            Ok(s) => Ok(s.workers() as u32),
            Err(e) => Err(e.to_string()),
        },
    };
    comm::send(world, 0, TAG_START, &wire::frame(&ready, &[]));
    let mut idle = comm::Backoff::new();
    let cancel_pending = loop {
        match comm::try_recv(world, Some(0), TAG_DOWN) {
            Some((_, frame)) => {
                idle.reset();
                let Ok(s) = &server else {
                    // No local pool: only a shutdown is expected.
                    if let Some((Down::Shutdown { cancel_pending }, _)) =
                        wire::unframe::<Down>(&frame)
                    {
                        break cancel_pending;
                    }
                    continue;
                };
                if let Handled::Shutdown { cancel_pending } = s.handle(&frame) {
                    break cancel_pending;
                }
            }
            None => idle.wait(),
        }
    };
    if let Ok(s) = &server {
        s.finish(cancel_pending);
    }
    // Every job's answer was sent before `finish` returned, and MPI keeps the order of
    // messages between two ranks, so `Bye` arrives last.
    out(wire::frame(&Up::Bye, &[]));
    drop(server);
}
