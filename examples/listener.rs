//! A `Listener` that a Python process (or another Rust process) can connect to.
//!
//! Run: `cargo run --example listener`, then in another terminal:
//!
//! ```text
//! python3 -c "from multiprocessing.connection import Client
//! c = Client(('127.0.0.1', 6000), authkey=b'secret password')
//! c.send_bytes(b'hello'); print(c.recv_bytes())"
//! ```
//!
//! With `--self-test` it starts a Rust client itself and exits.

use multiproc::connection::{Client, Listener};

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let self_test = std::env::args().any(|a| a == "--self-test");
    let addr = if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:6000"
    };
    let listener = Listener::bind(addr, Some(b"secret password"))?;
    println!("listening on {}", listener.address());
    if self_test {
        let a = listener.address().clone();
        std::thread::spawn(move || {
            let c = Client::connect(a, Some(b"secret password")).unwrap();
            c.send_bytes(b"hello").unwrap();
            println!(
                "client got {:?}",
                String::from_utf8_lossy(&c.recv_bytes().unwrap())
            );
        });
    }
    loop {
        match listener.accept() {
            Ok(conn) => {
                let msg = conn.recv_bytes()?;
                println!("got {:?}", String::from_utf8_lossy(&msg));
                conn.send_bytes(&msg.to_ascii_uppercase())?;
                if self_test {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    return Ok(());
                }
            }
            Err(e) => eprintln!("refused a client: {e}"),
        }
    }
}
