//! `multiproc manager serve`: a standalone manager server on TCP (or a Unix socket).

use std::path::PathBuf;

use clap::Subcommand;
use multiproc::{Error, Manager, Result};

#[derive(Subcommand)]
pub(crate) enum ManagerCmd {
    /// Serves shared objects until a client shuts the server down (or it is killed).
    Serve {
        /// `host:port` for TCP (loopback by default), or a Unix socket path.
        #[arg(long, default_value = multiproc::manager::DEFAULT_TCP_ADDRESS)]
        listen: String,
        /// A file holding the auth key (its bytes, a trailing newline removed). Required
        /// for TCP.
        #[arg(long)]
        authkey_file: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: ManagerCmd) -> Result<()> {
    match cmd {
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
