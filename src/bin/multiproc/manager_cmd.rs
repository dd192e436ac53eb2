//! `multiproc manager serve`: a standalone manager server on TCP (or a Unix socket);
//! `multiproc manager load`: many clients on one manager, checked exactly.

use std::path::PathBuf;

use clap::Subcommand;
use multiproc::{Error, Manager, Result};

#[derive(Subcommand)]
pub(crate) enum ManagerCmd {
    /// Serves shared objects until a client shuts the server down (or it is killed). It
    /// allows no `update` functions: those are code of a program, registered by a server
    /// that program runs (`ManagerBuilder::update_fn`).
    Serve {
        /// `host:port` for TCP (loopback by default), or a Unix socket path.
        #[arg(long, default_value = multiproc::manager::DEFAULT_TCP_ADDRESS)]
        listen: String,
        /// A file holding the auth key (its bytes, a trailing newline removed). Required
        /// for TCP.
        #[arg(long)]
        authkey_file: Option<PathBuf>,
    },
    /// Many clients from several processes on one manager for a while; then checks that no
    /// update was lost and prints ops/s and p50/p99 latency per operation.
    Load {
        /// Clients in all (threads, one connection each), split evenly over --procs.
        #[arg(long, default_value_t = 64)]
        clients: u32,
        /// Client processes.
        #[arg(long, default_value_t = 4)]
        procs: u32,
        /// How long the clients run, in seconds.
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
        /// One JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: ManagerCmd) -> Result<()> {
    match cmd {
        ManagerCmd::Load {
            clients,
            procs,
            secs,
            json,
        } => crate::manager_load::run(clients, procs, secs, json),
        ManagerCmd::Serve {
            listen,
            authkey_file,
        } => {
            let key = match authkey_file {
                Some(f) => {
                    let mut k = std::fs::read(&f)
                        .map_err(|e| Error::io(format!("read the auth key {}", f.display()), e))?;
                    while k.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        k.pop();
                    }
                    if k.is_empty() {
                        return Err(Error::InvalidArgument(format!(
                            "the auth key file {} is empty",
                            f.display()
                        )));
                    }
                    k
                }
                None => Vec::new(),
            };
            let m = Manager::serve(listen.as_str(), &key)?;
            eprintln!("multiproc manager serving on {}", m.address());
            m.serve_forever()
        }
    }
}
