//! Pipe and Connection: framing, sizes, EOF, timeouts, limits, passing to a Process.

mod common;
use common::deadline;

use std::time::{Duration, Instant};

use multiproc::{Connection, Error, Pipe, Process, StartMethod};

multiproc::test_support!();

#[test]
fn values_and_bytes_keep_boundaries_at_any_size() {
    deadline(30, || {
        let (a, b) = Pipe::duplex().unwrap();
        let sizes = [
            0usize,
            1,
            3,
            4,
            100,
            16 * 1024,
            16 * 1024 + 1,
            65536,
            65537,
            3 << 20,
        ];
        let t = std::thread::spawn(move || {
            for &n in &sizes {
                let v: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
                a.send_bytes(&v).unwrap();
                a.send(&(n as u64, "tag")).unwrap();
            }
            a
        });
        for &n in &sizes {
            let v = b.recv_bytes().unwrap();
            assert_eq!(v.len(), n);
            assert!(v.iter().enumerate().all(|(i, &x)| x == (i * 7 + n) as u8));
            let (m, s): (u64, String) = b.recv().unwrap();
            assert_eq!((m as usize, s.as_str()), (n, "tag"));
        }
        drop(t.join().unwrap());
    });
}

#[test]
fn eof_when_peer_is_gone_even_mid_message() {
    deadline(10, || {
        let (a, b) = Pipe::duplex().unwrap();
        drop(a);
        assert!(matches!(b.recv_bytes(), Err(Error::Closed(_))));
        assert!(matches!(b.send_bytes(b"x"), Err(Error::Closed(_))));

        // A header promising 1000 bytes, then only 10, then the peer dies.
        let (a, b) = Pipe::duplex().unwrap();
        let raw = std::os::unix::net::UnixStream::from(raw_fd(a));
        use std::io::Write;
        (&raw).write_all(&1000i32.to_be_bytes()).unwrap();
        (&raw).write_all(&[1; 10]).unwrap();
        drop(raw);
        match b.recv_bytes() {
            Err(Error::Closed(m)) => assert!(m.contains("middle"), "{m}"),
            other => panic!("expected EOF, got {other:?}"),
        }
    });
}

/// The socket under a Connection (a dup), to write malformed frames by hand.
fn raw_fd(c: Connection) -> std::os::fd::OwnedFd {
    use std::os::fd::AsFd;
    c.as_fd().try_clone_to_owned().unwrap()
}

#[test]
fn oversized_and_malformed_lengths_are_typed_errors() {
    deadline(10, || {
        let (a, b) = Pipe::duplex().unwrap();
        let raw = raw_fd(a);
        let s = std::os::unix::net::UnixStream::from(raw);
        use std::io::Write;
        // Claims 2^62 bytes under a limit: refused without allocating.
        b.set_max_message_size(1 << 30);
        (&s).write_all(&(-1i32).to_be_bytes()).unwrap();
        (&s).write_all(&(1u64 << 62).to_be_bytes()).unwrap();
        match b.recv_bytes() {
            Err(Error::Protocol(m)) => assert!(m.contains("exceeds"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        // The stream lost its framing: later reads fail too, quickly.
        assert!(matches!(b.recv_bytes(), Err(Error::Protocol(_))));

        // Without a limit (a default Pipe), a claim no memory can hold is a typed error,
        // not an abort.
        let (a, b) = Pipe::duplex().unwrap();
        let s = std::os::unix::net::UnixStream::from(raw_fd(a));
        (&s).write_all(&(-1i32).to_be_bytes()).unwrap();
        (&s).write_all(&(1u64 << 62).to_be_bytes()).unwrap();
        match b.recv_bytes() {
            Err(Error::Protocol(m)) => assert!(m.contains("memory"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }

        let (a, b) = Pipe::duplex().unwrap();
        let s = std::os::unix::net::UnixStream::from(raw_fd(a));
        (&s).write_all(&(-7i32).to_be_bytes()).unwrap();
        assert!(matches!(b.recv_bytes(), Err(Error::Protocol(_))));

        // A configurable limit.
        let (a, b) = Pipe::duplex().unwrap();
        b.set_max_message_size(1000);
        a.send_bytes(&[0; 1000]).unwrap();
        assert_eq!(b.recv_bytes().unwrap().len(), 1000);
        a.send_bytes(&[0; 1001]).unwrap();
        assert!(matches!(b.recv_bytes(), Err(Error::Protocol(_))));
    });
}

#[test]
fn wrong_type_is_a_typed_error_naming_it() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff]).unwrap();
    match b.recv::<(u64, String)>() {
        Err(Error::WrongType { expected, .. }) => assert!(expected.contains("String")),
        other => panic!("{other:?}"),
    }
    // A message holding more than a `T` (here two numbers read as one) is not a `T`.
    a.send(&(5u32, 7u32)).unwrap();
    match b.recv::<u32>() {
        Err(e @ Error::WrongType { .. }) => {
            let m = e.to_string();
            assert!(m.contains("u32") && m.contains("left over"), "{m}");
        }
        other => panic!("a (u32, u32) read as u32 must fail, got {other:?}"),
    }
    // The next message is fine.
    a.send(&5u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

const BIG: usize = 100 << 20;

fn send_big(c: Connection) {
    let mut m = vec![0u8; BIG];
    for (i, b) in m.iter_mut().enumerate().step_by(4093) {
        *b = (i % 251) as u8 + 1;
    }
    *m.last_mut().unwrap() = 0xee;
    c.send_bytes(&m).unwrap();
    // Stay until the parent has it all (our end closing early must not matter, but the
    // parent's answer proves the whole message arrived).
    let _ = c.recv_bytes();
}

#[test]
fn a_default_pipe_carries_a_100_mb_message_between_processes() {
    deadline(120, || {
        let (a, b) = Pipe::duplex().unwrap();
        let p = Process::start(send_big, b).unwrap();
        let m = a.recv_bytes_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(m.len(), BIG);
        assert_eq!(m[BIG - 1], 0xee);
        for (i, &b) in m.iter().enumerate().step_by(4093) {
            assert_eq!(b, (i % 251) as u8 + 1, "byte {i}");
        }
        drop(m);
        a.send_bytes(b"got it").unwrap();
        assert!(p.join_timeout(Duration::from_secs(30)));
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(a.max_message_size(), usize::MAX, "no limit by default");
    });
}

#[test]
fn timeouts_are_honoured_and_partial_messages_resume() {
    deadline(20, || {
        let (a, b) = Pipe::duplex().unwrap();
        for d in [
            Duration::ZERO,
            Duration::from_millis(20),
            Duration::from_millis(100),
        ] {
            let t0 = Instant::now();
            assert!(matches!(b.recv_bytes_timeout(d), Err(Error::Timeout(_))));
            let el = t0.elapsed();
            assert!(
                el >= d && el < d + Duration::from_millis(250),
                "{el:?} for {d:?}"
            );
        }
        assert!(!b.poll(Duration::from_millis(10)).unwrap());
        // Half a large message, a timeout, then the rest.
        let s = std::os::unix::net::UnixStream::from(raw_fd(a));
        use std::io::Write;
        let big = vec![9u8; 200_000];
        (&s).write_all(&(200_000i32).to_be_bytes()).unwrap();
        (&s).write_all(&big[..70_000]).unwrap();
        assert!(b.poll(Duration::ZERO).unwrap());
        assert!(matches!(
            b.recv_bytes_timeout(Duration::from_millis(30)),
            Err(Error::Timeout(_))
        ));
        (&s).write_all(&big[70_000..]).unwrap();
        assert_eq!(b.recv_bytes_timeout(Duration::from_secs(5)).unwrap(), big);
    });
}

#[test]
fn simplex_ends_are_one_way() {
    let (r, w) = Pipe::simplex().unwrap();
    w.send(&1u32).unwrap();
    assert_eq!(r.recv::<u32>().unwrap(), 1);
    assert!(matches!(r.send(&1u32), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.recv::<u32>(), Err(Error::InvalidArgument(_))));
}

fn echo_doubled(c: Connection) {
    while let Ok(n) = c.recv::<u64>() {
        c.send(&(n * 2)).unwrap();
    }
}

fn send_then_die(c: Connection) {
    c.send_bytes(&[7; 100]).unwrap();
    // A header and half a message, then SIGKILL ourselves.
    let s = std::os::unix::net::UnixStream::from(raw_fd(c));
    use std::io::Write;
    (&s).write_all(&(1000i32).to_be_bytes()).unwrap();
    (&s).write_all(&[1; 500]).unwrap();
    kill_self();
}

fn kill_self() {
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn connections_passed_to_processes_work_there() {
    deadline(60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let (mine, theirs) = Pipe::duplex().unwrap();
            let p = Process::start_with(method, echo_doubled, theirs).unwrap();
            for i in 0..100u64 {
                mine.send(&i).unwrap();
                assert_eq!(
                    mine.recv_timeout::<u64>(Duration::from_secs(10)).unwrap(),
                    2 * i
                );
            }
            drop(mine);
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(0));
        }
        // A child killed mid-message: the first message arrives, then EOF (not a hang).
        let (mine, theirs) = Pipe::duplex().unwrap();
        let p = Process::start(send_then_die, theirs).unwrap();
        assert_eq!(mine.recv_bytes().unwrap(), vec![7; 100]);
        assert!(matches!(mine.recv_bytes(), Err(Error::Closed(_))));
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert_eq!(p.exitcode(), Some(-9));
    });
}

#[test]
fn a_connection_cannot_be_sent_through_a_connection() {
    let (a, _b) = Pipe::duplex().unwrap();
    let (c, _d) = Pipe::duplex().unwrap();
    match a.send(&c) {
        Err(Error::Serialize { message, .. }) => assert!(message.contains("argument"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wait_on_several_connections() {
    deadline(10, || {
        let (a, b) = Pipe::duplex().unwrap();
        let (c, d) = Pipe::duplex().unwrap();
        let t0 = Instant::now();
        let none = multiproc::connection::wait(&[&b, &d], Some(Duration::from_millis(50))).unwrap();
        assert!(none.is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let c2 = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c.send(&2u8).unwrap();
            c
        });
        assert_eq!(multiproc::connection::wait(&[&b, &d], None).unwrap(), [1]);
        a.send(&1u8).unwrap();
        a.send(&1u8).unwrap();
        let _: u8 = b.recv().unwrap(); // the second message is now buffered in `b`
        let ready = multiproc::connection::wait(&[&b, &d], Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, [0, 1]);
        drop(a);
        drop(c2.join().unwrap());
    });
}
