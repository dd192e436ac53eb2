//! `Process` basics: names, exit codes, signals, `current_process`, `active_children`.
//! Run: `cargo run --example process`.

use std::time::Duration;

use multiproc::Process;

fn info(title: String) {
    let me = multiproc::current_process();
    println!("{title}: I am {} (pid {})", me.name(), me.pid());
}

fn fail(code: i32) {
    std::process::exit(code);
}

fn forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    info("parent".into());
    let a = Process::start(info, "child".to_string())?;
    let b = Process::builder()
        .name("custom-name")
        .start(info, "child".to_string())?;
    a.join();
    b.join();
    let c = Process::start(fail, 3)?;
    c.join();
    println!("{} exited with {:?}", c.name(), c.exitcode());
    let d = Process::builder().daemon(true).start(forever, ())?;
    println!(
        "active children: {:?}",
        multiproc::active_children()
            .iter()
            .map(|p| p.name().to_string())
            .collect::<Vec<_>>()
    );
    d.terminate()?;
    d.join();
    println!("{} was terminated: exitcode {:?}", d.name(), d.exitcode());
    Ok(())
}
