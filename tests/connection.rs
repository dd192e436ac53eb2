//! Listener / Client: authentication, limits, and byte-level interop with CPython's
//! `multiprocessing.connection` (a real `python3` in both directions).

mod common;
use common::deadline;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Error;
use multiproc::connection::{Address, Client, Listener};

multiproc::test_support!();

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mp-test-{}-{tag}.sock", std::process::id()))
}

/// A python3 child that is killed if the test fails before waiting for it.
struct Py(Child);

impl Py {
    fn start(script: &str, args: &[&str]) -> Py {
        Py(Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed for the interop tests"))
    }

    fn wait(mut self, secs: u64) -> (i32, String) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                self.0
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                return (st.code().unwrap_or(-1), out);
            }
            assert!(Instant::now() < end, "python3 did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn first_line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_string()
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
fam, addr, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
if fam == 'tcp':
    h, p = addr.rsplit(':', 1); addr = (h, int(p))
try:
    c = Client(addr, authkey=key if key else None)
except Exception as e:
    print('AUTHFAIL', type(e).__name__); sys.exit(3)
c.send_bytes(b'hello from python')
big = bytes(i % 251 for i in range(5 * 1024 * 1024 + 3))
c.send_bytes(big)
r = c.recv_bytes()
assert r == b'HELLO FROM PYTHON', r
r = c.recv_bytes()
assert r == big[::-1], len(r)
print('OK')
"#;

fn serve_python_client(listener: &Listener) -> multiproc::Result<()> {
    let c = listener.accept_timeout(Duration::from_secs(20))?;
    let m = c.recv_bytes_timeout(Duration::from_secs(20))?;
    assert_eq!(m, b"hello from python");
    let big = c.recv_bytes_timeout(Duration::from_secs(20))?;
    assert_eq!(big.len(), 5 * 1024 * 1024 + 3);
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    c.send_bytes(&m.to_ascii_uppercase())?;
    let rev: Vec<u8> = big.iter().rev().copied().collect();
    c.send_bytes(&rev)
}

#[test]
fn python_client_talks_to_rust_listener_unix_and_tcp() {
    deadline(60, || {
        let path = sock_path("py-client");
        let unix = Listener::bind(path.as_path(), Some(b"s3cret")).unwrap();
        let tcp = Listener::bind("127.0.0.1:0", Some(b"s3cret")).unwrap();
        for (fam, l) in [("unix", &unix), ("tcp", &tcp)] {
            let addr = l.address().to_string();
            let py = Py::start(PY_CLIENT, &[fam, &addr, "s3cret"]);
            serve_python_client(l).unwrap();
            assert_eq!(py.wait(20), (0, "OK\n".to_string()), "{fam}");
        }
        drop(unix);
        assert!(
            !path.exists(),
            "the socket file is removed with the listener"
        );
    });
}

#[test]
fn wrong_key_is_refused_and_the_listener_serves_others() {
    deadline(60, || {
        let listener = Listener::bind("127.0.0.1:0", Some(b"right")).unwrap();
        let addr = listener.address().clone();
        // A Python client with the wrong key.
        let py = Py::start(PY_CLIENT, &["tcp", &addr.to_string(), "wrong"]);
        match listener.accept_timeout(Duration::from_secs(20)) {
            Err(Error::AuthenticationFailed(_)) => {}
            other => panic!("{other:?}"),
        }
        let (code, out) = py.wait(20);
        assert_eq!((code, out.as_str()), (3, "AUTHFAIL AuthenticationError\n"));
        // A Rust client with the wrong key.
        let a2 = addr.clone();
        let t = std::thread::spawn(move || Client::connect(a2, Some(b"nope")));
        assert!(matches!(
            listener.accept_timeout(Duration::from_secs(20)),
            Err(Error::AuthenticationFailed(_))
        ));
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::AuthenticationFailed(_))
        ));
        // A client without a key against a keyed listener: refused, no hang.
        let a3 = addr.clone();
        let t = std::thread::spawn(move || {
            let c = Client::connect(a3, None).unwrap();
            c.send_bytes(b"no handshake").unwrap();
            c.recv_bytes_timeout(Duration::from_secs(10))
        });
        assert!(matches!(
            listener.accept_timeout(Duration::from_secs(20)),
            Err(Error::AuthenticationFailed(_))
        ));
        let _ = t.join().unwrap();
        // Then a good client is served.
        let py = Py::start(PY_CLIENT, &["tcp", &addr.to_string(), "right"]);
        serve_python_client(&listener).unwrap();
        assert_eq!(py.wait(20).0, 0);
    });
}

#[test]
fn silent_peer_times_out_in_the_handshake() {
    deadline(30, || {
        let mut listener = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        listener.set_handshake_timeout(Duration::from_millis(200));
        let Address::Tcp(a) = listener.address().clone() else {
            unreachable!()
        };
        let _silent = std::net::TcpStream::connect(a).unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            listener.accept(),
            Err(Error::AuthenticationFailed(_))
        ));
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            listener.accept_timeout(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
    });
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
fam, key = sys.argv[1], sys.argv[2].encode()
addr = ('127.0.0.1', 0) if fam == 'tcp' else sys.argv[3]
with Listener(addr, authkey=key if key else None) as l:
    a = l.address
    print(f'{a[0]}:{a[1]}' if fam == 'tcp' else a, flush=True)
    try:
        c = l.accept()
    except Exception as e:
        print('AUTHFAIL', type(e).__name__); sys.exit(3)
    n = 0
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(m[::-1])
        n += 1
    print('served', n)
"#;

#[test]
fn rust_client_talks_to_python_listener() {
    deadline(60, || {
        for (fam, key) in [("tcp", "k1"), ("unix", "k2"), ("tcp", "")] {
            let path = sock_path(&format!("py-listener-{fam}-{key}"));
            let mut py = Py::start(PY_LISTENER, &[fam, key, path.to_str().unwrap()]);
            let addr = py.first_line();
            let key_opt = (!key.is_empty()).then_some(key.as_bytes());
            let c = Client::connect(addr.as_str(), key_opt).unwrap();
            for size in [0usize, 5, 20_000, 3 << 20] {
                let m: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
                c.send_bytes(&m).unwrap();
                let r = c.recv_bytes_timeout(Duration::from_secs(20)).unwrap();
                assert!(r.iter().rev().eq(m.iter()), "{fam} {size}");
            }
            drop(c);
            let (code, out) = py.wait(20);
            assert_eq!((code, out.trim()), (0, "served 4"), "{fam}");
        }
        // Wrong key against the Python listener.
        let mut py = Py::start(PY_LISTENER, &["tcp", "good", ""]);
        let addr = py.first_line();
        assert!(matches!(
            Client::connect(addr.as_str(), Some(b"bad")),
            Err(Error::AuthenticationFailed(_))
        ));
        assert_eq!(py.wait(20).0, 3);
    });
}

#[test]
fn oversized_message_from_a_peer_is_a_typed_error() {
    deadline(30, || {
        let mut listener = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        listener.set_max_message_size(1000);
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::connect(addr, Some(b"k")).unwrap();
            c.send_bytes(&[1; 1000]).unwrap();
            c.send_bytes(&[2; 1001]).unwrap();
            c
        });
        let c = listener.accept().unwrap();
        assert_eq!(c.recv_bytes().unwrap(), vec![1; 1000]);
        match c.recv_bytes() {
            Err(Error::Protocol(m)) => assert!(m.contains("1001"), "{m}"),
            other => panic!("{other:?}"),
        }
        drop(t.join().unwrap());
    });
}

#[test]
fn rust_to_rust_with_values() {
    deadline(30, || {
        let path = sock_path("rust");
        let listener = Listener::bind(path.as_path(), Some(b"key")).unwrap();
        let t = std::thread::spawn(move || {
            let c = Client::connect(path.as_path(), Some(b"key")).unwrap();
            c.send(&vec![("a".to_string(), 1u32)]).unwrap();
            c.recv::<String>().unwrap()
        });
        let c = listener.accept().unwrap();
        let v: Vec<(String, u32)> = c.recv().unwrap();
        c.send(&format!("{v:?}")).unwrap();
        assert_eq!(t.join().unwrap(), r#"[("a", 1)]"#);
    });
}

/// CPython 3.12's handshake functions (copied from its `multiprocessing/connection.py`),
/// patched into the installed Python so both protocol generations are tested against a
/// real HMAC implementation. It reports the digest our side answered with.
const PY312_CLIENT: &str = r#"
import sys, os, hmac
import multiprocessing.connection as mc
from multiprocessing import AuthenticationError
_CHALLENGE, _WELCOME, _FAILURE = b'#CHALLENGE#', b'#WELCOME#', b'#FAILURE#'
_ALLOWED = {b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'}
used = []
def _get(message):
    if len(message) in (20, 16):
        return '', message
    if message.startswith(b'{') and (curly := message.find(b'}', 1, 20 + 2)) > 0:
        d = message[1:curly]
        if d in _ALLOWED:
            return d.decode('ascii'), message[curly + 1:]
    raise AuthenticationError('unsupported message')
def _create_response(authkey, message):
    name = _get(message)[0]
    if not name:
        return hmac.new(authkey, message, 'md5').digest()
    return b'{%s}%s' % (name.encode('ascii'), hmac.new(authkey, message, name).digest())
def _verify_challenge(authkey, message, response):
    d, mac = _get(response)
    d = d or 'md5'
    used.append(d)
    expected = hmac.new(authkey, message, d).digest()
    if len(expected) != len(mac) or not hmac.compare_digest(expected, mac):
        raise AuthenticationError('digest received was wrong')
def deliver_challenge(connection, authkey, digest_name='sha256'):
    message = b'{%s}%s' % (digest_name.encode('ascii'), os.urandom(40))
    connection.send_bytes(_CHALLENGE + message)
    response = connection.recv_bytes(256)
    try:
        _verify_challenge(authkey, message, response)
    except AuthenticationError:
        connection.send_bytes(_FAILURE)
        raise
    else:
        connection.send_bytes(_WELCOME)
def answer_challenge(connection, authkey):
    message = connection.recv_bytes(256)
    assert message.startswith(_CHALLENGE)
    message = message[len(_CHALLENGE):]
    connection.send_bytes(_create_response(authkey, message))
    if connection.recv_bytes(256) != _WELCOME:
        raise AuthenticationError('digest sent was rejected')
mc.deliver_challenge, mc.answer_challenge = deliver_challenge, answer_challenge
h, p = sys.argv[1].rsplit(':', 1)
try:
    c = mc.Client((h, int(p)), authkey=sys.argv[2].encode())
except AuthenticationError:
    print('AUTHFAIL', used); sys.exit(3)
c.send_bytes(b'3.12')
assert c.recv_bytes() == b'ok'
print('OK', used)
"#;

#[test]
fn python_312_protocol_uses_sha256_both_ways() {
    deadline(60, || {
        let listener = Listener::bind("127.0.0.1:0", Some(b"modern")).unwrap();
        let addr = listener.address().to_string();
        let py = Py::start(PY312_CLIENT, &[&addr, "modern"]);
        let c = listener.accept_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"3.12");
        c.send_bytes(b"ok").unwrap();
        assert_eq!(py.wait(20), (0, "OK ['sha256']\n".to_string()));
        let py = Py::start(PY312_CLIENT, &[&addr, "old"]);
        assert!(matches!(
            listener.accept_timeout(Duration::from_secs(20)),
            Err(Error::AuthenticationFailed(_))
        ));
        assert_eq!(py.wait(20).0, 3);
    });
}

const PY_SENDS_A_DICT: &str = r#"
import sys
from multiprocessing.connection import Client
h, p = sys.argv[1].rsplit(':', 1)
c = Client((h, int(p)))
c.send({'a': 1, 'b': [1, 2, 3]})
c.send_bytes(bytes([7]))   # postcard's encoding of 7u64
assert c.recv_bytes() == b'done'
print('OK')
"#;

#[test]
fn a_pickle_read_as_a_value_is_a_typed_error_and_the_stream_stays_in_sync() {
    deadline(60, || {
        let listener = Listener::bind("127.0.0.1:0", None).unwrap();
        let py = Py::start(PY_SENDS_A_DICT, &[&listener.address().to_string()]);
        let c = listener.accept_timeout(Duration::from_secs(20)).unwrap();
        match c.recv_timeout::<u64>(Duration::from_secs(20)) {
            Err(e @ Error::WrongType { expected, .. }) => {
                assert_eq!(expected, "u64");
                let m = e.to_string();
                assert!(
                    m.contains("u64")
                        && m.contains("pickled Python object")
                        && m.contains("recv_bytes")
                        && m.contains("recv_pickle"),
                    "{m}"
                );
            }
            other => panic!("a pickled dict read as u64 must fail, got {other:?}"),
        }
        assert_eq!(c.recv_timeout::<u64>(Duration::from_secs(20)).unwrap(), 7);
        c.send_bytes(b"done").unwrap();
        assert_eq!(py.wait(20), (0, "OK\n".to_string()));
    });
}

/// Reads the listener's challenge on a raw socket, then claims a message of `len` bytes.
fn claim_huge_answer(addr: std::net::SocketAddr, header: &[u8]) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    let mut challenge = vec![0u8; i32::from_be_bytes(n) as usize];
    s.read_exact(&mut challenge).unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#"));
    s.write_all(header).unwrap();
    s
}

#[test]
fn before_authentication_a_huge_length_is_refused_without_allocating_it() {
    deadline(30, || {
        let mut listener = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        // However large the limit for authenticated peers, the handshake keeps its own.
        listener.set_max_message_size(usize::MAX);
        assert_eq!(listener.max_message_size(), usize::MAX);
        let Address::Tcp(a) = listener.address().clone() else {
            unreachable!()
        };
        let mut huge = (-1i32).to_be_bytes().to_vec();
        huge.extend_from_slice(&(1u64 << 60).to_be_bytes()); // would abort if allocated
        for header in [huge, i32::MAX.to_be_bytes().to_vec()] {
            let t = std::thread::spawn(move || claim_huge_answer(a, &header));
            match listener.accept_timeout(Duration::from_secs(10)) {
                Err(Error::AuthenticationFailed(m)) => assert!(m.contains("exceeds"), "{m}"),
                other => panic!("{other:?}"),
            }
            drop(t.join().unwrap());
        }
        // After authentication the listener's limit applies: here none, so a message
        // above the old 64 MiB default goes through.
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::connect(addr, Some(b"k")).unwrap();
            c.send_bytes(&vec![3u8; 65 << 20]).unwrap();
            c
        });
        let c = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(c.max_message_size(), usize::MAX);
        let m = c.recv_bytes_timeout(Duration::from_secs(20)).unwrap();
        assert!(m.len() == 65 << 20 && m.iter().all(|&b| b == 3));
        drop(t.join().unwrap());
    });
}

#[test]
fn listener_and_client_connections_keep_a_default_limit() {
    deadline(30, || {
        let listener = Listener::bind("127.0.0.1:0", None).unwrap();
        assert_eq!(
            listener.max_message_size(),
            multiproc::connection::DEFAULT_MAX_MESSAGE
        );
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect(addr, None).unwrap());
        let c = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        let client = t.join().unwrap();
        assert_eq!(
            c.max_message_size(),
            multiproc::connection::DEFAULT_MAX_MESSAGE
        );
        assert_eq!(
            client.max_message_size(),
            multiproc::connection::DEFAULT_MAX_MESSAGE
        );
    });
}
