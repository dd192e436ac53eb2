//! The program that owns a pool, a `Process`, a fork server or a `Manager` is SIGKILLed (or
//! gets a terminal's Ctrl-C): within 1 s nothing it started is alive, not even a task's own
//! child, no `/dev/shm` segment of theirs is left, and what only a live process could have
//! unlinked (a user's `SharedMemory`) is unlinked by the next start of a multiproc program.
//!
//! Each case re-executes this test binary as the "program" (`MP_TEST_HELPER`), which
//! reports every descendant it has once it is set up. This test process is a child
//! subreaper, so the orphans are reparented to it, and it reaps them: a descendant is
//! "gone" only once it has no `/proc` entry at all.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::descendants;
use multiproc::{Executor, Manager, Process, ProcessPool, SharedMemory, StartMethod};

/// The programs the tests kill: run from `.init_array` when `MP_TEST_HELPER` is set, before
/// the test harness, as the whole program.
#[used]
#[unsafe(link_section = ".init_array")]
static HELPERS: extern "C" fn() = {
    extern "C" fn run_helper() {
        if std::env::var_os("MULTIPROC_ROLE").is_some() {
            return; // a worker or fork server: multiproc's own hook runs it
        }
        let Ok(helper) = std::env::var("MP_TEST_HELPER") else {
            return;
        };
        let report = PathBuf::from(std::env::var("MP_TEST_FILE").unwrap());
        match helper.as_str() {
            "pool_forkserver" => own_pool(&report, StartMethod::ForkServer),
            "pool_spawn" => own_pool(&report, StartMethod::Spawn),
            "process_forkserver" => own_process(&report, StartMethod::ForkServer),
            "process_spawn" => own_process(&report, StartMethod::Spawn),
            "manager" => own_manager(&report),
            "segments" => own_segments(&report),
            "create_a_segment" => drop(SharedMemory::create(64).unwrap()),
            "start_a_manager" => Manager::start().unwrap().shutdown().unwrap(),
            "map_long" => map_long(&report),
            _ => return,
        }
        std::process::exit(0);
    }
    run_helper
};

/// Starts `sleep 1000` and returns its pid; the child is left running on purpose (it is
/// what a task or process started, which must die with its starter's group).
#[allow(clippy::zombie_processes)]
fn start_sleep() -> u32 {
    Command::new("sleep").arg("1000").spawn().unwrap().id()
}

/// A pool task: starts a grandchild (if told to) and returns.
fn task_starts_sleep(grandchild: bool) -> u32 {
    if grandchild { start_sleep() } else { 0 }
}

/// Whether a task's or process's own children die with the program under `method`. Under
/// the fork server they do: it kills its children's groups when the program dies. A
/// re-executed (`Spawn`) child dies by its death signal, which spares its own children
/// (see src/bootstrap/README.md, "When the program dies").
fn grandchildren_die(method: StartMethod) -> bool {
    method == StartMethod::ForkServer
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Writes `lines` to `report` atomically (the test reads it once it exists).
fn write_report(report: &Path, lines: &[String]) {
    let tmp = report.with_extension("tmp");
    std::fs::write(&tmp, lines.join("\n")).unwrap();
    std::fs::rename(&tmp, report).unwrap();
}

fn join_pids(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn own_pool(report: &Path, method: StartMethod) {
    let pool = ProcessPool::builder()
        .workers(2)
        .start_method(method)
        .build()
        .unwrap();
    pool.submit(task_starts_sleep, grandchildren_die(method))
        .unwrap()
        .result()
        .unwrap();
    write_report(report, &[join_pids(&descendants(std::process::id()))]);
    sleep_forever();
}

fn process_body((ready, grandchild): (String, bool)) {
    let sleep = if grandchild { start_sleep() } else { 0 };
    std::fs::write(ready, sleep.to_string()).unwrap();
    sleep_forever();
}

fn own_process(report: &Path, method: StartMethod) {
    let ready = report.with_extension("ready");
    let _p = Process::builder()
        .start_method(method)
        .start(
            process_body,
            (ready.display().to_string(), grandchildren_die(method)),
        )
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(Instant::now() < end, "the process never started its child");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&ready);
    write_report(report, &[join_pids(&descendants(std::process::id()))]);
    sleep_forever();
}

fn own_manager(report: &Path) {
    let m = Manager::start().unwrap();
    m.dict::<String, u64>("d")
        .unwrap()
        .insert(&"x".into(), &1)
        .unwrap();
    let path = match m.address() {
        multiproc::connection::Address::Unix(p) => p.display().to_string(),
        other => panic!("a private manager listens on a Unix socket, not {other:?}"),
    };
    let key: String = m
        .authkey()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write_report(
        report,
        &[join_pids(&descendants(std::process::id())), path, key],
    );
    sleep_forever();
}

fn own_segments(report: &Path) {
    let named =
        SharedMemory::create_named(&format!("multiproc-test-pd-{}", std::process::id()), 64)
            .unwrap();
    let random = SharedMemory::create(64).unwrap();
    let mut kept = SharedMemory::create(64).unwrap();
    kept.persist().unwrap();
    let lock = multiproc::Lock::new().unwrap();
    let _ = &lock;
    write_report(
        report,
        &[
            named.name().to_owned(),
            random.name().to_owned(),
            kept.name().to_owned(),
        ],
    );
    sleep_forever();
}

fn task_sleeps(ms: u64) -> u64 {
    start_sleep();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Inside `pool.map` of long tasks, each of which started a child, when Ctrl-C comes.
fn map_long(report: &Path) {
    let pool = ProcessPool::new(2).unwrap();
    let report = report.to_owned();
    std::thread::spawn(move || {
        // Two workers, the fork server and each task's `sleep`.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let d = descendants(std::process::id());
            if d.iter().filter(|&&p| comm(p) == "sleep").count() == 2 {
                write_report(&report, &[join_pids(&d)]);
                return;
            }
            assert!(Instant::now() < end, "the tasks never started");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let r = pool.map(task_sleeps, [30_000u64, 30_000]);
    // Reached only if the map ended: it must not.
    eprintln!("map returned {r:?}");
    std::process::exit(9);
}

// ---- inspecting processes ------------------------------------------------------------

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Makes this process the reaper of orphans among its descendants (once).
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap()
    });
}

/// Starts this binary as helper `name`, in a process group of its own (as a shell starts
/// a job), and waits for its report.
fn start_program(name: &str) -> (Child, Vec<String>) {
    become_subreaper();
    let report = std::env::temp_dir().join(format!("mp-pd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("MP_TEST_HELPER", name)
        .env("MP_TEST_FILE", &report)
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        if let Ok(t) = std::fs::read_to_string(&report) {
            break t.lines().map(str::to_owned).collect::<Vec<_>>();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("helper {name} ended before it reported: {status}");
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("helper {name} never reported");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&report);
    (child, lines)
}

fn parse_pids(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Asserts that within `within` of `since` every pid is dead (exited: a zombie at most),
/// then reaps those that became our children and asserts that none is left at all.
/// Kills whatever survived, so a failing test leaves nothing behind.
fn assert_all_die(pids: &[u32], since: Instant, within: Duration) {
    let mut alive: Vec<u32>;
    loop {
        alive = pids.iter().copied().filter(|&p| !common::dead(p)).collect();
        if alive.is_empty() || since.elapsed() > within {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = since.elapsed();
    let survivors: Vec<(u32, String)> = alive.iter().map(|&p| (p, comm(p))).collect();
    for &p in &alive {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(p as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    reap(pids);
    assert!(
        survivors.is_empty(),
        "alive {took:?} after their program died: {survivors:?}"
    );
}

/// Reaps every pid in `pids` that is (or becomes, by reparenting) our child, and waits
/// until none of them has a `/proc` entry left.
fn reap(pids: &[u32]) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        for &p in pids {
            let pid = rustix::process::Pid::from_raw(p as i32).unwrap();
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| common::exists(p))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "never reaped: {left:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `/dev/shm` entries whose name says one of `pids` created them.
fn segments_of(pids: &[u32]) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| pids.iter().any(|p| n.starts_with(&format!("mp-{p}-"))))
        .collect()
}

fn shm_exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// SIGKILLs the program and checks that everything it started dies within 1 s, and that
/// no segment of theirs is left.
fn kill_program_and_check(mut program: Child, pids: &[u32]) {
    assert!(pids.iter().all(|&p| !common::dead(p)), "{pids:?}");
    let t = Instant::now();
    program.kill().unwrap(); // SIGKILL: no exit hook, no destructor runs
    program.wait().unwrap();
    assert_all_die(pids, t, Duration::from_secs(1));
    let mut all = pids.to_vec();
    all.push(program.id());
    assert_eq!(segments_of(&all), Vec::<String>::new());
}

#[test]
fn a_killed_pool_owner_leaves_nothing_under_either_start_method() {
    common::deadline(60, || {
        for (helper, want) in [("pool_forkserver", 4), ("pool_spawn", 2)] {
            let (program, lines) = start_program(helper);
            let pids = parse_pids(&lines[0]);
            // Two workers; with the fork server, it and the task's `sleep`.
            assert_eq!(pids.len(), want, "{helper}: {pids:?}");
            kill_program_and_check(program, &pids);
        }
    });
}

#[test]
fn a_killed_process_owner_leaves_nothing_under_either_start_method() {
    common::deadline(60, || {
        for (helper, want) in [("process_forkserver", 3), ("process_spawn", 1)] {
            let (program, lines) = start_program(helper);
            let pids = parse_pids(&lines[0]);
            // The process; with the fork server, it and the process's `sleep`.
            assert_eq!(pids.len(), want, "{helper}: {pids:?}");
            kill_program_and_check(program, &pids);
        }
    });
}

#[test]
fn a_killed_manager_owner_leaves_nothing_and_its_clients_get_an_error() {
    common::deadline(60, || {
        let (program, lines) = start_program("manager");
        let pids = parse_pids(&lines[0]);
        assert!(!pids.is_empty(), "{lines:?}");
        let socket = PathBuf::from(&lines[1]);
        let key: Vec<u8> = (0..lines[2].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&lines[2][i..i + 2], 16).unwrap())
            .collect();
        // A client in another program (this one).
        let m = Manager::connect(socket.clone(), &key).unwrap();
        let d = m.dict::<String, u64>("d").unwrap();
        assert_eq!(d.get(&"x".into()).unwrap(), Some(1));
        kill_program_and_check(program, &pids);
        // The client learns that the server is gone, promptly, as a typed error.
        let t = Instant::now();
        let r = d.get(&"x".into());
        assert!(matches!(r, Err(multiproc::Error::Disconnected(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        drop((d, m));
        // Nobody could unlink the server's socket ...
        assert!(socket.exists());
        // ... until the next program starts a private manager.
        let out = Command::new(std::env::current_exe().unwrap())
            .env("MP_TEST_HELPER", "start_a_manager")
            .env("MP_TEST_FILE", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            !socket.exists(),
            "the dead server's socket {socket:?} is left"
        );
    });
}

#[test]
fn segments_of_a_killed_program_are_unlinked_by_the_next_start() {
    common::deadline(60, || {
        let (mut program, lines) = start_program("segments");
        let (named, random, kept) = (&lines[0], &lines[1], &lines[2]);
        let mine: Vec<&String> = vec![named, random];
        assert!(mine.iter().all(|n| shm_exists(n)) && shm_exists(kept));
        let registry = segments_of(&[program.id()]);
        assert!(
            registry.iter().any(|n| n.ends_with("-registry")),
            "the caller-named segment is in a registry: {registry:?}"
        );
        let lock_and_others = registry.len();
        // A sweep while the owner lives touches nothing of it.
        SharedMemory::sweep_dead_owners();
        assert_eq!(segments_of(&[program.id()]).len(), lock_and_others);

        program.kill().unwrap();
        program.wait().unwrap();
        // Nobody could unlink them: they outlive the SIGKILL ...
        assert!(mine.iter().all(|n| shm_exists(n)));
        // ... until the next start of a multiproc program that uses shared memory.
        let out = Command::new(std::env::current_exe().unwrap())
            .env("MP_TEST_HELPER", "create_a_segment")
            .env("MP_TEST_FILE", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        for n in &mine {
            assert!(!shm_exists(n), "{n} survived the next start");
        }
        assert_eq!(
            segments_of(&[program.id()]),
            vec![kept.clone()],
            "only the persisted segment is left"
        );
        SharedMemory::open(kept).unwrap().unlink().unwrap();
    });
}

#[test]
fn ctrl_c_inside_map_ends_the_program_and_everything_it_started() {
    common::deadline(60, || {
        let (mut program, lines) = start_program("map_long");
        let pids = parse_pids(&lines[0]);
        // The fork server, two workers, two `sleep`s.
        assert_eq!(pids.len(), 5, "{pids:?}");
        let t = Instant::now();
        // What a terminal does on Ctrl-C: SIGINT to the foreground process group.
        rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(program.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        let status = loop {
            if let Some(s) = program.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(2) {
                let _ = program.kill();
                let _ = program.wait();
                assert_all_die(&pids, t, Duration::ZERO);
                panic!("the program did not exit within 2 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
        assert_all_die(&pids, t, Duration::from_secs(1));
    });
}
