//! SharedMemory, Value and Array: naming, errors, visibility across processes (both start
//! methods), interoperability with CPython, and cleanup even when the creator is SIGKILLed.

mod common;

use std::path::Path;
use std::time::Duration;

use multiproc::{Array, Error, Event, Process, SharedMemory, StartMethod, Value};

multiproc::test_support!();

const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

fn join_ok(p: &Process) {
    if !p.join_timeout(Duration::from_secs(60)) {
        let _ = p.kill();
        panic!("process {} hung", p.pid());
    }
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn create_open_and_errors() {
    let a = SharedMemory::create(10_000).unwrap();
    assert_eq!(a.len(), 10_000);
    assert!(a.is_owner());
    assert!(exists(a.name()));
    let b = SharedMemory::open(a.name()).unwrap();
    assert_eq!(b.len(), 10_000);
    let slash = SharedMemory::open(&format!("/{}", a.name())).unwrap();
    assert_eq!(slash.name(), a.name());
    drop(slash);
    assert!(!b.is_owner());
    assert!(matches!(
        SharedMemory::create_named(a.name(), 10),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        SharedMemory::open("multiproc-test-no-such-segment"),
        Err(Error::NotFound(_))
    ));
    for bad in ["", "a/b", ".."] {
        assert!(matches!(
            SharedMemory::open(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        SharedMemory::create(0),
        Err(Error::InvalidArgument(_))
    ));
    let name = a.name().to_owned();
    drop(b);
    drop(a);
    assert!(!exists(&name), "the creator's drop unlinks");
}

#[test]
fn writes_are_seen_through_every_handle() {
    let a = SharedMemory::create(4096).unwrap();
    let b = a.clone_handle().unwrap();
    a.write_at(100, b"hello").unwrap();
    let mut got = [0u8; 5];
    b.read_at(100, &mut got).unwrap();
    assert_eq!(&got, b"hello");
    // SAFETY: each view is a temporary that ends with its statement, and nothing else
    // touches the segment meanwhile.
    unsafe {
        a.as_pod_slice_mut::<u32>()[3] = 0xdead_beef;
        assert_eq!(b.as_pod_slice::<u32>()[3], 0xdead_beef);
        assert_eq!(b.as_pod_slice::<u32>().len(), 1024);
        assert_eq!(&b.as_slice()[100..105], b"hello");
    }
}

#[test]
fn copies_check_bounds_and_handle_every_alignment() {
    // 21 bytes: two whole words and a 5-byte tail, which copies reach byte by byte.
    let a = SharedMemory::create(21).unwrap();
    let b = a.clone_handle().unwrap();
    assert!(matches!(
        a.write_at(17, b"12345"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.read_at(usize::MAX, &mut [0]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.write_at(22, b""),
        Err(Error::InvalidArgument(_))
    ));
    a.write_at(21, b"").unwrap();
    let all: Vec<u8> = (1..=21).collect();
    for off in 0..21 {
        for len in 0..=21 - off {
            a.write_at(0, &[0; 21]).unwrap();
            a.write_at(off, &all[off..off + len]).unwrap();
            let mut want = vec![0u8; 21];
            want[off..off + len].copy_from_slice(&all[off..off + len]);
            assert_eq!(b.to_vec(), want, "write of {len} at {off}");
            let mut got = vec![0u8; len];
            b.read_at(off, &mut got).unwrap();
            assert_eq!(got, &want[off..off + len], "read of {len} at {off}");
        }
    }
    assert_eq!(a.atomic_u64s().len(), 2);
}

#[test]
fn neighbouring_byte_writes_from_two_threads_are_both_kept() {
    // Bytes 3 and 4 share one word: a copy that rewrote the whole word from a stale read
    // would lose the other thread's byte.
    let shm = SharedMemory::create(8).unwrap();
    let n = 20_000u32;
    std::thread::scope(|s| {
        for at in [3usize, 4] {
            let shm = &shm;
            s.spawn(move || {
                for i in 0..n {
                    shm.write_at(at, &[(i % 200) as u8 + at as u8]).unwrap();
                }
            });
        }
    });
    let last = ((n - 1) % 200) as u8;
    assert_eq!(shm.to_vec(), [0, 0, 0, last + 3, last + 4, 0, 0, 0]);
}

#[test]
fn a_value_guard_works_on_a_copy_that_is_written_back_on_release() {
    let v = Value::new(5u64).unwrap();
    let w = v.clone();
    let mut g = v.lock().unwrap();
    *g += 1;
    // Another thread reads without the lock while the guard is held: it sees the value as
    // it was (no reference into the shared memory exists for it to race with).
    let seen = std::thread::spawn(move || w.get_unsynchronized())
        .join()
        .unwrap();
    assert_eq!(seen, 5);
    drop(g);
    assert_eq!(v.get_unsynchronized(), 6);
    assert_eq!(v.get().unwrap(), 6);

    let a = Array::from_slice(&[1u32, 2, 3]).unwrap();
    let mut g = a.lock().unwrap();
    g[1] = 20;
    drop(g);
    assert_eq!(a.to_vec().unwrap(), [1, 20, 3]);

    // Zero-sized values have nothing to copy.
    let z = Array::<()>::new(3).unwrap();
    assert_eq!(z.lock().unwrap().len(), 3);
    assert_eq!(z.to_vec().unwrap().len(), 3);
}

#[test]
fn unsynchronized_access_racing_a_guard_is_sound() {
    // A writer without the lock and a guard holder at once: each sees whole values of its
    // own, and the guard's write-back wins when it is released.
    let v = Value::new([0u64; 4]).unwrap();
    std::thread::scope(|s| {
        let raw = &v;
        s.spawn(move || {
            for i in 0..10_000u64 {
                raw.set_unsynchronized([i; 4]);
                let got = raw.get_unsynchronized();
                assert!(got.iter().all(|&x| x <= 10_000), "{got:?}");
            }
        });
        for _ in 0..200 {
            let mut g = v.lock().unwrap();
            g[0] = u64::MAX;
            assert_eq!(g[0], u64::MAX);
            g[0] = 7;
        }
    });
    let mut g = v.lock().unwrap();
    *g = [9; 4];
    drop(g);
    assert_eq!(v.get().unwrap(), [9; 4]);
}

#[test]
fn unlink_and_persist() {
    let a = SharedMemory::create(64).unwrap();
    let mut b = a.clone_handle().unwrap();
    b.unlink().unwrap();
    assert!(!exists(a.name()));
    assert!(matches!(b.unlink(), Err(Error::NotFound(_))));
    a.write_at(0, &[1]).unwrap(); // still mapped
    drop(a); // nothing left to unlink: no error, no panic

    let mut c = SharedMemory::create_named("multiproc-test-persist", 64).unwrap();
    c.persist().unwrap();
    drop(c);
    assert!(exists("multiproc-test-persist"));
    SharedMemory::open("multiproc-test-persist")
        .unwrap()
        .unlink()
        .unwrap();
    assert!(!exists("multiproc-test-persist"));
}

fn write_pattern(shm: SharedMemory) {
    let pattern: Vec<u8> = (0..shm.len()).map(|i| (i % 251) as u8).collect();
    shm.write_at(0, &pattern).unwrap();
}

#[test]
fn a_child_process_writes_the_parent_reads() {
    for method in METHODS {
        let shm = SharedMemory::create(1 << 20).unwrap();
        join_ok(&Process::start_with(method, write_pattern, shm.clone_handle().unwrap()).unwrap());
        assert!(
            shm.to_vec()
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
        );
    }
}

fn double_all(a: Array<u64>) {
    for x in a.lock().unwrap().iter_mut() {
        *x *= 2;
    }
}

fn add_to_value(v: Value<f64>) {
    *v.lock().unwrap() += 0.5;
}

#[test]
fn value_and_array_cross_processes() {
    for method in METHODS {
        let a = Array::from_slice(&(0..1000u64).collect::<Vec<_>>()).unwrap();
        join_ok(&Process::start_with(method, double_all, a.clone()).unwrap());
        assert_eq!(
            a.to_vec().unwrap(),
            (0..1000u64).map(|x| 2 * x).collect::<Vec<_>>()
        );
        assert_eq!(a.get(999).unwrap(), 1998);
        a.set(0, 7).unwrap();
        assert_eq!(a.get(0).unwrap(), 7);
        assert_eq!(a.len(), 1000);

        let v = Value::new(1.0f64).unwrap();
        join_ok(&Process::start_with(method, add_to_value, v.clone()).unwrap());
        assert_eq!(v.get().unwrap(), 1.5);
        v.set(3.0).unwrap();
        assert_eq!(v.get_unsynchronized(), 3.0);
        assert!(!v.get_lock().locked());
    }
}

#[test]
fn a_process_using_primitives_leaves_nothing_behind() {
    fn busy(_: ()) {
        let _a = SharedMemory::create(4096).unwrap();
        let _b = SharedMemory::create_named(&format!("multiproc-test-{}", std::process::id()), 8)
            .unwrap();
        let _v = Value::new(1u8).unwrap();
        let _l = multiproc::Lock::new().unwrap();
        let _c = multiproc::Condition::new().unwrap();
    } // dropped here; the child then ends with _exit
    for method in METHODS {
        let p = Process::start_with(method, busy, ()).unwrap();
        join_ok(&p);
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&format!("-{}-", p.pid())) || n.ends_with(&p.pid().to_string()))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

// ---- the creator dies without unlinking --------------------------------------------------

fn create_and_hang((names, ready): (Array<u8>, Event)) {
    let random = SharedMemory::create(4096).unwrap();
    let named =
        SharedMemory::create_named(&format!("multiproc-test-kill-{}", std::process::id()), 64)
            .unwrap();
    let mut kept = SharedMemory::create(64).unwrap();
    kept.persist().unwrap();
    let lock = multiproc::Lock::new().unwrap();
    let list = format!("{} {} {} {}", kept.name(), random.name(), named.name(), {
        // A Lock's segment name, through its serialized handle.
        let bytes = postcard::to_stdvec(&lock).unwrap();
        let (name, _): (String, u32) = postcard::from_bytes(&bytes).unwrap();
        name
    });
    let mut g = names.lock().unwrap();
    g[..list.len()].copy_from_slice(list.as_bytes());
    drop(g);
    ready.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn segments_of_a_sigkilled_creator_are_swept() {
    for method in METHODS {
        let names = Array::<u8>::new(512).unwrap();
        let ready = Event::new().unwrap();
        let p =
            Process::start_with(method, create_and_hang, (names.clone(), ready.clone())).unwrap();
        assert!(ready.wait_timeout(Duration::from_secs(30)));
        let list = names.to_vec().unwrap();
        let list = String::from_utf8(list.into_iter().take_while(|&b| b != 0).collect()).unwrap();
        let mut list: Vec<&str> = list.split(' ').collect();
        assert_eq!(list.len(), 4);
        let kept = list.remove(0);
        assert!(exists(kept));
        assert!(list.iter().all(|n| exists(n)));
        let registry_of = |pid: u32| {
            std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&format!("mp-{pid}-")) && n.ends_with("-registry")
            })
        };
        assert!(registry_of(p.pid()));

        // The sweep leaves the segments of a live creator alone.
        SharedMemory::sweep_dead_owners();
        assert!(list.iter().all(|n| exists(n)));

        p.kill().unwrap();
        assert!(p.join_timeout(Duration::from_secs(10)));
        // The parent that started the process sweeps when it sees it die abnormally,
        // before `join` returns: nobody has to call the sweep.
        for n in &list {
            assert!(!exists(n), "{n} survived the sweep");
        }
        assert!(!registry_of(p.pid()));
        assert!(exists(kept), "a persisted segment survives its creator");
        SharedMemory::open(kept).unwrap().unlink().unwrap();
    }
}

// ---- CPython interoperability ------------------------------------------------------------

use common::python;

#[test]
fn python_attaches_to_a_rust_segment() {
    let shm = SharedMemory::create(4096).unwrap();
    shm.write_at(0, b"from rust!\0").unwrap();
    let script = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
# CPython gh-82300: an attaching process must not let its tracker unlink the segment.
resource_tracker.unregister(shm._name, "shared_memory")
print(shm.size, bytes(shm.buf[:10]).decode())
shm.buf[20:31] = b"from python"
shm.close()
"#;
    let out = python(script, &[shm.name()]);
    assert_eq!(out.trim(), "4096 from rust!");
    assert_eq!(&shm.to_vec()[20..31], b"from python");
    assert!(exists(shm.name()), "Python must not have unlinked it");
}

#[test]
fn rust_attaches_to_a_python_segment() {
    let name = format!("multiproc-test-py-{}", std::process::id());
    let create = r#"
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=1000)
shm.buf[:9] = b"py wrote!"
# Keep it after this process exits: hand it over to the Rust side.
from multiprocessing import resource_tracker
resource_tracker.unregister(shm._name, "shared_memory")
shm.close()
print(shm.name)
"#;
    let out = python(create, &[&name]);
    assert_eq!(out.trim(), name);
    let mut shm = SharedMemory::open(&name).unwrap();
    assert_eq!(shm.len(), 1000);
    assert_eq!(&shm.to_vec()[..9], b"py wrote!");
    shm.unlink().unwrap();
    assert!(!exists(&name));
}

#[test]
fn value_and_array_locks_time_out() {
    let v = Value::new(0u32).unwrap();
    let a = Array::<u8>::new(4).unwrap();
    let (gv, ga) = (v.lock().unwrap(), a.lock().unwrap());
    let (v2, a2) = (v.clone(), a.clone());
    let t = std::thread::spawn(move || {
        let d = Duration::from_millis(20);
        (
            matches!(v2.lock_timeout(d), Err(multiproc::AcquireError::Timeout(_))),
            matches!(a2.lock_timeout(d), Err(multiproc::AcquireError::Timeout(_))),
        )
    });
    assert_eq!(t.join().unwrap(), (true, true));
    drop((gv, ga));
    assert!(v.lock_timeout(Duration::from_millis(20)).is_ok());
    assert!(a.lock_timeout(Duration::from_millis(20)).is_ok());
}
