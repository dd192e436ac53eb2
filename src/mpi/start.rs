//! Rank 0's side of start-up: every rank checks in, runs the same build, and starts its
//! local workers; or start-up fails, naming the rank and host, and every rank can finalize.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::local::{Out, Server};
use super::root::{Link, Shared, spawn_receiver, spawn_sender};
use super::wire::{self, Down, Hello, Ready, Start, TAG_DOWN, TAG_START, TAG_UP, Up};
use super::{MpiPool, MpiPoolBuilder, RankInfo, comm};
use crate::error::{Error, Result};
use crate::future::PoolLink;

impl MpiPool {
    pub(super) fn start_root(
        cfg: MpiPoolBuilder,
        universe: mpi::environment::Universe,
        world: &mpi::topology::SimpleCommunicator,
        size: i32,
        hello: Hello,
    ) -> Result<MpiPool> {
        // 1. Every rank checks in; all must run this very build, or code offsets would
        //    point at the wrong functions.
        let mut hellos = vec![hello];
        for r in 1..size {
            let got = comm::recv_timeout(world, r, TAG_START, cfg.start_timeout);
            match got.as_deref().and_then(wire::unframe::<Hello>) {
                Some((h, _)) => hellos.push(h),
                None => {
                    // A rank that never checks in cannot be finalized with: end the job.
                    eprintln!(
                        "multiproc: MPI rank {r} did not check in within {:?}; aborting the job",
                        cfg.start_timeout
                    );
                    mpi::topology::Communicator::abort(world, 1);
                }
            }
        }
        let mine = hellos[0].build_id.clone();
        if let Some((r, h)) = hellos.iter().enumerate().find(|(_, h)| h.build_id != mine) {
            let err = Error::BinaryMismatch {
                path: format!("{} (MPI rank {r} on host {})", h.exe, h.host),
                expected: mine.clone(),
                found: h.build_id.clone(),
            };
            let msg = Start::Abort(err.to_string());
            for r in 1..size {
                comm::send(world, r, TAG_START, &wire::frame(&msg, &[]));
            }
            return Err(err);
        }
        for r in 1..size {
            comm::send(world, r, TAG_START, &wire::frame(&Start::Go, &[]));
        }
        let round_trip = (cfg.bench_pings > 0 && size > 1).then(|| {
            let mut times = Vec::with_capacity(cfg.bench_pings);
            for _ in 0..cfg.bench_pings {
                let t = Instant::now();
                comm::send(world, 1, TAG_START, &[0u8]);
                let _ = comm::recv_any_blocking(world, 1);
                times.push(t.elapsed());
            }
            times.sort();
            times[times.len() / 2]
        });

        // 2. Every rank starts its local workers (rank 0 too, if it serves).
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ranks: Vec<RankInfo> = hellos
            .iter()
            .enumerate()
            .map(|(r, h)| RankInfo {
                rank: r as i32,
                host: h.host.clone(),
                workers: 0,
            })
            .collect();
        let shared_slot: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
        let slot = shared_slot.clone();
        let out: Out = Arc::new(move |frame| {
            if let Some(s) = slot.get().and_then(Weak::upgrade) {
                s.handle_up(0, &frame);
            }
        });
        let mut failures = Vec::new();
        let local = if cfg.root_serves || size == 1 {
            match Server::start(&cfg.local, out) {
                Ok(s) => {
                    ranks[0].workers = s.workers();
                    Some(s)
                }
                Err(e) => {
                    failures.push(format!("rank 0 on host {}: {e}", ranks[0].host));
                    None
                }
            }
        } else {
            None
        };
        let mut up = Vec::new();
        for r in 1..size {
            let got = comm::recv_timeout(world, r, TAG_START, cfg.start_timeout);
            match got.as_deref().and_then(wire::unframe::<Ready>) {
                Some((Ready { workers: Ok(n) }, _)) => {
                    ranks[r as usize].workers = n as usize;
                    up.push(r);
                }
                Some((Ready { workers: Err(e) }, _)) => {
                    failures.push(format!("rank {r} on host {}: {e}", ranks[r as usize].host));
                    up.push(r);
                }
                None => {
                    eprintln!(
                        "multiproc: MPI rank {r} did not start its workers within {:?}; \
                         aborting the job",
                        cfg.start_timeout
                    );
                    mpi::topology::Communicator::abort(world, 1);
                }
            }
        }
        if !failures.is_empty() {
            // Stop the ranks that did start, and wait for their goodbyes, so MPI can
            // finalize cleanly.
            let stop = wire::frame(
                &Down::Shutdown {
                    cancel_pending: true,
                },
                &[],
            );
            for &r in &up {
                comm::send(world, r, TAG_DOWN, &stop);
            }
            for &r in &up {
                loop {
                    let got = comm::recv_timeout(world, r, TAG_UP, cfg.start_timeout);
                    match got.as_deref().and_then(wire::unframe::<Up>) {
                        Some((Up::Bye, _)) => break,
                        Some(_) => continue,
                        None => mpi::topology::Communicator::abort(world, 1),
                    }
                }
            }
            if let Some(l) = local {
                l.finish(true);
            }
            return Err(Error::StartFailed(format!(
                "local workers did not start on {}",
                failures.join("; ")
            )));
        }

        // 3. Running: a receiver and a sender thread carry the frames.
        let shared = Arc::new(Shared {
            load: (0..size).map(|_| AtomicUsize::new(0)).collect(),
            ranks,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            cancel_pending: AtomicBool::new(false),
            byes: Mutex::new(0),
            bye_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            tx,
            local: OnceLock::new(),
        });
        if let Some(l) = local {
            let _ = shared.local.set(l);
        }
        let _ = shared_slot.set(Arc::downgrade(&shared));
        let mut threads = Vec::new();
        if size > 1 {
            threads.push(spawn_receiver(shared.clone())?);
            threads.push(spawn_sender(rx)?);
        }
        let link = Arc::new(Link(Arc::downgrade(&shared)));
        let weak_link: Weak<dyn PoolLink> = Arc::downgrade(&link) as _;
        Ok(MpiPool {
            shared,
            weak_link,
            _link: link,
            threads: Mutex::new(threads),
            joined: AtomicBool::new(false),
            round_trip,
            _universe: universe,
        })
    }
}
