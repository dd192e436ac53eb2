//! `Connection::send_pickle` / `recv_pickle` against a real `python3`, both ways, over
//! `Listener` / `Client`.

multiproc::test_support!();
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::deadline;
use multiproc::Error;
use multiproc::connection::{Client, Listener};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

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

    fn first_line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_string()
    }

    fn wait(mut self, secs: u64) -> (i32, String) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                let mut out = String::new();
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
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mp-test-{}-{tag}.sock", std::process::id()))
}

const PY_PEER: &str = r#"
import os, sys
from multiprocessing.connection import Client
addr, key, marker = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
c = Client(addr, authkey=key)
for obj in [None, True, 42, -7, 2**40, 3.5, "héllo", b"\x00\x01\xff", [1, 2, 3], (1, "a"),
            {"a": 1, "b": 2}, {"name": "ada", "tags": ["x", "y"], "point": (1.5, -2.0)}]:
    c.send(obj)
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))
c.send(Evil())
c.send("still here")
got = []
while True:
    o = c.recv()
    if o == "END":
        break
    got.append(o)
expected = [None, False, 123456789012, -1.25, "ünïcode", b"\x00raw", [1, 2, 3],
            (7, "seven", None), {"k": [1, 2]}, {"id": 9, "name": "bob", "scores": [1.0, 2.5]}]
c.send(got == expected)
print(repr(got))
"#;

#[derive(Debug, Deserialize, PartialEq)]
struct Tagged {
    name: String,
    tags: Vec<String>,
    point: (f64, f64),
}

#[derive(Serialize)]
struct Person {
    id: u32,
    name: String,
    scores: Vec<f64>,
}

#[test]
fn objects_travel_between_rust_and_python_over_listener_and_client() {
    deadline(60, || {
        let path = sock_path("pickle");
        let marker = sock_path("pickle-evil-ran");
        let listener = Listener::bind(path.as_path(), Some(b"pk")).unwrap();
        let py = Py::start(
            PY_PEER,
            &[path.to_str().unwrap(), "pk", marker.to_str().unwrap()],
        );
        let c = listener.accept_timeout(Duration::from_secs(20)).unwrap();
        let t = Duration::from_secs(20);

        // Python -> Rust
        c.recv_pickle_timeout::<()>(t).unwrap();
        assert!(c.recv_pickle_timeout::<bool>(t).unwrap());
        assert_eq!(c.recv_pickle_timeout::<i32>(t).unwrap(), 42);
        assert_eq!(c.recv_pickle_timeout::<i64>(t).unwrap(), -7);
        assert_eq!(c.recv_pickle_timeout::<u64>(t).unwrap(), 1 << 40);
        assert_eq!(c.recv_pickle_timeout::<f64>(t).unwrap(), 3.5);
        assert_eq!(c.recv_pickle_timeout::<String>(t).unwrap(), "héllo");
        assert_eq!(
            c.recv_pickle_timeout::<ByteBuf>(t).unwrap().into_vec(),
            vec![0, 1, 0xff]
        );
        assert_eq!(c.recv_pickle_timeout::<Vec<i32>>(t).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            c.recv_pickle_timeout::<(i32, String)>(t).unwrap(),
            (1, "a".to_string())
        );
        let d: HashMap<String, i32> = c.recv_pickle_timeout(t).unwrap();
        assert_eq!(d, HashMap::from([("a".into(), 1), ("b".into(), 2)]));
        let s: Tagged = c.recv_pickle_timeout(t).unwrap();
        assert_eq!(
            s,
            Tagged {
                name: "ada".into(),
                tags: vec!["x".into(), "y".into()],
                point: (1.5, -2.0)
            }
        );
        // A pickle that would call a Python function is refused, and nothing runs.
        let err = c.recv_pickle_timeout::<String>(t).unwrap_err();
        assert!(matches!(err, Error::Deserialize { .. }), "{err}");
        assert!(!marker.exists(), "unpickling ran code");
        // The connection goes on.
        assert_eq!(c.recv_pickle_timeout::<String>(t).unwrap(), "still here");

        // Rust -> Python
        c.send_pickle(&()).unwrap();
        c.send_pickle(&false).unwrap();
        c.send_pickle(&123_456_789_012i64).unwrap();
        c.send_pickle(&-1.25f64).unwrap();
        c.send_pickle("ünïcode").unwrap();
        c.send_pickle(&ByteBuf::from(b"\x00raw".to_vec())).unwrap();
        c.send_pickle(&vec![1, 2, 3]).unwrap();
        c.send_pickle(&(7, "seven", None::<i32>)).unwrap();
        c.send_pickle(&BTreeMap::from([("k", vec![1, 2])])).unwrap();
        c.send_pickle(&Person {
            id: 9,
            name: "bob".into(),
            scores: vec![1.0, 2.5],
        })
        .unwrap();
        c.send_pickle("END").unwrap();
        let same: bool = c.recv_pickle_timeout(t).unwrap();
        let (code, out) = py.wait(20);
        assert_eq!(code, 0, "{out}");
        assert!(same, "python got {out}");
        drop(listener);
    });
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
l = Listener(('127.0.0.1', 0), authkey=b'echo')
print('%s:%d' % l.address, flush=True)
c = l.accept()
while True:
    o = c.recv()
    if o is None:
        break
    c.send({"echo": o, "type": type(o).__name__})
print('done')
"#;

#[derive(Debug, Deserialize, PartialEq)]
struct Echo<T> {
    echo: T,
    r#type: String,
}

#[test]
fn a_rust_client_exchanges_objects_with_a_python_listener() {
    deadline(60, || {
        let mut py = Py::start(PY_LISTENER, &[]);
        let addr = py.first_line();
        let c = Client::connect(addr.as_str(), Some(b"echo")).unwrap();
        let t = Duration::from_secs(20);
        c.send_pickle(&vec!["a", "b"]).unwrap();
        let e: Echo<Vec<String>> = c.recv_pickle_timeout(t).unwrap();
        assert_eq!(e.echo, vec!["a", "b"]);
        assert_eq!(e.r#type, "list");
        c.send_pickle(&(1u8, 2.5f32)).unwrap();
        let e: Echo<(u8, f32)> = c.recv_pickle_timeout(t).unwrap();
        assert_eq!((e.echo, e.r#type.as_str()), ((1, 2.5), "tuple"));
        c.send_pickle(&HashMap::from([(1, "one")])).unwrap();
        let e: Echo<HashMap<i32, String>> = c.recv_pickle_timeout(t).unwrap();
        assert_eq!(e.echo, HashMap::from([(1, "one".to_string())]));
        assert_eq!(e.r#type, "dict");
        c.send_pickle(&ByteBuf::from(vec![9u8; 3])).unwrap();
        let e: Echo<ByteBuf> = c.recv_pickle_timeout(t).unwrap();
        assert_eq!(
            (e.echo.into_vec(), e.r#type.as_str()),
            (vec![9; 3], "bytes")
        );
        c.send_pickle(&None::<u8>).unwrap();
        let (code, out) = py.wait(20);
        assert_eq!((code, out.lines().last()), (0, Some("done")));
    });
}

#[test]
fn an_oversized_or_malformed_pickle_is_a_typed_error() {
    deadline(20, || {
        let (a, b) = multiproc::Pipe::duplex().unwrap();
        a.send_bytes(b"\x80\x04garbage").unwrap();
        assert!(matches!(
            b.recv_pickle::<i32>(),
            Err(Error::Deserialize { .. })
        ));
        b.set_max_message_size(16);
        a.send_pickle(&"x".repeat(100)).unwrap();
        assert!(matches!(b.recv_pickle::<String>(), Err(Error::Protocol(_))));
        // A panicking Deserialize fails that message only.
        #[derive(Debug)]
        struct Grumpy;
        impl<'de> Deserialize<'de> for Grumpy {
            fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                panic!("grumpy")
            }
        }
        let (a, b) = multiproc::Pipe::duplex().unwrap();
        a.send_pickle(&1).unwrap();
        a.send_pickle(&2).unwrap();
        let err = b.recv_pickle::<Grumpy>().unwrap_err();
        assert!(err.to_string().contains("grumpy"), "{err}");
        assert_eq!(b.recv_pickle::<i32>().unwrap(), 2);
    });
}
