//! Two processes talking over a `Pipe`. Run: `cargo run --example pipe`.

use multiproc::{Connection, Pipe, Process};

fn child(conn: Connection) {
    conn.send(&vec!["hello", "from", "the child"]).unwrap();
    let reply: String = conn.recv().unwrap();
    println!("child got: {reply}");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let (parent_end, child_end) = Pipe::duplex()?;
    let p = Process::start(child, child_end)?;
    let words: Vec<String> = parent_end.recv()?;
    println!("parent got: {words:?}");
    parent_end.send(&words.join(" ").to_uppercase())?;
    p.join();
    println!("child exit code: {:?}", p.exitcode());
    Ok(())
}
