//! # From Python: each idiom of the tutorials beside its multiproc form
//!
//! A cookbook for programs ported from `threading`, `multiprocessing` and
//! `concurrent.futures`. Every example here runs as a test.
//!
//! | Python | multiproc |
//! |---|---|
//! | `if __name__ == "__main__":` | [`init()`](crate::init) as the first line of `main` |
//! | `with Pool() as p:` | a scope: the pool finishes its tasks and stops when dropped |
//! | `p.close(); p.join()` | [`close`](crate::ProcessPool::close), [`join`](crate::ProcessPool::join) |
//! | `p.starmap(f, pairs)`, `ex.submit(f, a, b)` | [`starmap`](crate::Executor::starmap), [`submit_star`](crate::Executor::submit_star) |
//! | `p.map_async(f, xs).get()` | [`map_async`](crate::Executor::map_async)`(..)?.result()` |
//! | `fut.exception()`, `fut.running()` | [`TaskFuture::exception`](crate::TaskFuture::exception), [`running`](crate::TaskFuture::running) |
//! | `Value('i', 0)` / `RawValue('i', 0)` | [`Value::new`](crate::Value::new) / its `*_unsynchronized` methods |
//! | `shared_memory.SharedMemory` + `Semaphore` | [`SharedMemory`](crate::SharedMemory) + [`Semaphore`](crate::Semaphore) |
//! | `Pool(initializer=init, initargs=(q,))` | [`initializer`](crate::ProcessPoolBuilder::initializer), a `static` in the worker |
//! | `threading.Thread(target=f, args=(x,))` | [`Thread::with_arg`](crate::Thread::with_arg) |
//! | `threading.enumerate()`, `daemon=True` | [`enumerate`](crate::enumerate), [`ThreadBuilder::daemon`](crate::ThreadBuilder::daemon) |
//! | `threading.Timer(5, f)` | [`Timer::new`](crate::Timer::new) |
//! | `threading.local()` | [`thread_local!`] |
//! | `set_start_method("spawn")` | [`set_start_method`](crate::set_start_method) |
//! | `parent_process()` | [`parent_process`](crate::parent_process) |
//! | `conn.send(obj)` to/from Python | [`Connection::send_pickle`](crate::Connection::send_pickle) / [`recv_pickle`](crate::Connection::recv_pickle) |
//! | `Manager().list()`, `.dict()` | [`Manager::start`](crate::Manager::start)`()?.list::<T>(name)`, `.dict::<K, V>(name)` |
//! | `except KeyboardInterrupt: p.terminate()` | nothing: Ctrl-C ends the program and everything it started |
//!
//! ## `if __name__ == "__main__":` → `init()`
//!
//! Python re-imports the main module in every spawned worker, so the program's work hides
//! under `if __name__ == "__main__":`. A multiproc worker is your program started again
//! too; the first line of `main` turns it into a worker before any of your code runs.
//!
//! ```python
//! if __name__ == "__main__":
//!     with Pool(4) as p:
//!         print(p.map(square, range(10)))
//! ```
//!
//! ```standalone_crate
//! use multiproc::{Executor, Pool};
//! fn square(x: u64) -> u64 { x * x }
//! fn main() {
//!     multiproc::init(); // never forget: without it, a worker would run your main again
//!     let p = Pool::new(4).unwrap();
//!     println!("{:?}", p.map(square, 0..10).unwrap());
//! }
//! ```
//!
//! In an integration test file, write `multiproc::test_support!();` once at top level.
//!
//! `submit`, `map` and the rest are methods of the [`Executor`](crate::Executor) trait,
//! so `use multiproc::Executor` is what brings them in (and the compiler sees it used):
//!
//! ```standalone_crate
//! #![deny(unused_imports)]
//! use multiproc::{Executor, ProcessPool};
//! fn double(x: u32) -> u32 { x * 2 }
//! fn main() {
//!     multiproc::init();
//!     let pool = ProcessPool::new(1).unwrap();
//!     assert_eq!(pool.workers(), 1);
//!     assert_eq!(pool.submit(double, 2).unwrap().result().unwrap(), 4);
//! }
//! ```
//!
//! ## `with Pool() as p:` → a scope
//!
//! Leaving the `with` block stops the pool. In Rust the pool is dropped at the end of its
//! scope: submitted tasks finish first, then every worker exits. There is nothing to
//! forget on an early `return` or `?` either.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool};
//! fn cube(x: u64) -> u64 { x * x * x }
//! let fut = {
//!     let p = ProcessPool::new(2).unwrap();
//!     p.submit(cube, 3).unwrap()
//! }; // the pool is dropped here, after finishing its task
//! assert_eq!(fut.result().unwrap(), 27);
//! ```
//!
//! ## `close()` then `join()`
//!
//! Python's two-step shutdown: `close` refuses new tasks, `join` waits for the submitted
//! ones and the workers. [`shutdown(wait, cancel_pending)`](crate::ProcessPool::shutdown)
//! is `concurrent.futures`' form of the same.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, Pool};
//! fn work(x: u32) -> u32 { x + 1 }
//! let p = Pool::new(2).unwrap();
//! let results: Vec<_> = (0..4).map(|i| p.apply_async(work, i).unwrap()).collect();
//! p.close();
//! p.join().unwrap();
//! let v: Vec<u32> = results.into_iter().map(|r| r.result().unwrap()).collect();
//! assert_eq!(v, vec![1, 2, 3, 4]);
//! ```
//!
//! ## `except KeyboardInterrupt: pool.terminate()`
//!
//! Python programs catch Ctrl-C around `pool.map` to terminate the pool, and still hang
//! at times. multiproc installs no SIGINT handler: the program dies of the signal at once
//! (Rust's default), and its workers die with it (they die with their parent even on
//! SIGKILL), as does what their tasks started under the default start method; no `Drop`
//! runs. If you need cleanup on Ctrl-C, install a handler yourself (a signal-handling
//! thread that calls [`terminate`](crate::ProcessPool::terminate), then exits).
//!
//! ## Several arguments: `starmap`, `submit(f, a, b)`
//!
//! A function of several arguments takes them as a tuple: `starmap` over tuples, and
//! `submit_star` / `apply_async_star` for one call (plain `submit` keeps one argument, so
//! the compiler can infer a closure's argument type).
//!
//! ```python
//! def print_sum(a, b): print(a + b)
//! pool.starmap(print_sum, [(1, 2), (3, 4)])
//! executor.submit(print_sum, 1, 2)
//! ```
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool};
//! fn print_sum(a: i32, b: i32) -> i32 { println!("{}", a + b); a + b }
//! let pool = ProcessPool::new(2).unwrap();
//! assert_eq!(pool.starmap(print_sum, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
//! assert_eq!(pool.submit_star(print_sum, (1, 2)).unwrap().result().unwrap(), 3);
//! let all = pool.starmap_async(print_sum, vec![(5, 5)]).unwrap();
//! assert_eq!(all.result().unwrap(), vec![10]);
//! ```
//!
//! A process pool runs `fn` items and closures that capture nothing: what a Python
//! closure would capture goes into the argument.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool};
//! let offset = 10;
//! let pool = ProcessPool::new(2).unwrap();
//! // Not `move |x| x + offset`: pass `offset` along.
//! let v = pool.map(|(x, off): (i32, i32)| x + off, (0..3).map(|x| (x, offset))).unwrap();
//! assert_eq!(v, vec![10, 11, 12]);
//! ```
//!
//! The capturing form does not build (for a `Process` too), and the error names your line:
//!
//! ```compile_fail,E0080
//! # multiproc::init();
//! let expected = 7u8;
//! multiproc::Process::start(move |x: u8| assert_eq!(x, expected), 7).unwrap();
//! ```
//!
//! ## `Value` and `RawValue`
//!
//! A [`Value`](crate::Value) lives in shared memory with its own lock, as in Python:
//! `get`/`set` and `lock()` take it. Python's `RawValue` (no lock) is the same value read
//! and written through `get_unsynchronized`/`set_unsynchronized`: use it where one writer
//! owns the value, or for counters where a lost update does not matter.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool, Value};
//! fn add_one(v: Value<u64>) { *v.lock().unwrap() += 1; } // `with v.get_lock(): v.value += 1`
//! let counter = Value::new(0u64).unwrap();
//! let pool = ProcessPool::new(2).unwrap();
//! pool.map(add_one, vec![counter.clone(); 8]).unwrap();
//! assert_eq!(counter.get().unwrap(), 8);
//!
//! let raw = Value::new(1.5f64).unwrap(); // RawValue('d', 1.5)
//! raw.set_unsynchronized(2.5);
//! assert_eq!(raw.get_unsynchronized(), 2.5);
//! ```
//!
//! ## `Value` vs `SharedMemory` + `Semaphore`
//!
//! For one number, a `Value`. For a buffer that one process fills and another reads, a
//! [`SharedMemory`](crate::SharedMemory) segment (Python's `shared_memory.SharedMemory`,
//! same names, so a Python process can attach to it) and a
//! [`Semaphore`](crate::Semaphore) to say "ready".
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Process, Semaphore, SharedMemory};
//! fn fill((shm, ready): (SharedMemory, Semaphore)) {
//!     shm.write_at(0, b"hello").unwrap();
//!     ready.release();
//! }
//! let shm = SharedMemory::create(4096).unwrap();
//! let ready = Semaphore::new(0).unwrap();
//! let p = Process::start(fill, (shm.clone_handle().unwrap(), ready.clone())).unwrap();
//! let _filled = ready.acquire(); // blocks until the child released it
//! let mut got = [0u8; 5];
//! shm.read_at(0, &mut got).unwrap();
//! assert_eq!(&got, b"hello");
//! p.join();
//! ```
//!
//! ## A `Queue` for pool tasks: through the initializer
//!
//! As in Python, a queue cannot be a pool task's argument (a task may run in any worker,
//! long after it was sent). Give it to every worker once, with the initializer, and keep
//! it in a `static`; a [`Process`](crate::Process) takes a queue as its argument directly.
//!
//! ```python
//! def init(q): global results; results = q
//! def work(x): results.put(x * x)
//! with Pool(2, initializer=init, initargs=(q,)) as p: p.map(work, range(4))
//! ```
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool, Queue};
//! use std::sync::OnceLock;
//! static RESULTS: OnceLock<Queue<u64>> = OnceLock::new();
//! fn init(q: Queue<u64>) { let _ = RESULTS.set(q); }
//! fn work(x: u64) { RESULTS.get().unwrap().put(&(x * x)).unwrap(); }
//!
//! let q = Queue::new().unwrap();
//! let p = ProcessPool::builder().workers(2).initializer(init, q.clone()).build().unwrap();
//! p.map(work, 0..4).unwrap();
//! let mut got: Vec<u64> = (0..4).map(|_| q.get().unwrap()).collect();
//! got.sort();
//! assert_eq!(got, vec![0, 1, 4, 9]);
//! ```
//!
//! ## `Manager().list()`: results from every task
//!
//! The tutorials collect results from a pool into a manager's list. A manager proxy is an
//! ordinary argument: it travels to the worker and reconnects there on first use.
//!
//! ```python
//! def fetch(result_list, link): result_list.append(f"<{link}>")
//! with Manager() as m, Pool(2) as p:
//!     result_list = m.list()
//!     p.starmap(fetch, [(result_list, link) for link in links])
//! ```
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::manager::List;
//! use multiproc::{Executor, Manager, ProcessPool};
//!
//! fn fetch(result_list: List<String>, link: String) {
//!     result_list.append(&format!("<{link}>")).unwrap();
//! }
//! let m = Manager::start().unwrap();
//! let result_list = m.list::<String>("results").unwrap();
//! let links = ["a", "b", "c"].map(String::from);
//! let pool = ProcessPool::new(2).unwrap();
//! pool.starmap(fetch, links.iter().map(|l| (result_list.clone(), l.clone()))).unwrap();
//! let mut got = result_list.to_vec().unwrap();
//! got.sort();
//! assert_eq!(got, ["<a>", "<b>", "<c>"]);
//! ```
//!
//! Python's trap, mutating a value fetched from a shared dict (which changes nothing on the
//! server), is answered by [`Dict::update`](crate::manager::Dict::update): one atomic
//! read-modify-write on the server, by a `fn` the server allows
//! ([`ManagerBuilder::update_fn`](crate::manager::ManagerBuilder::update_fn), as
//! `BaseManager.register` allows callables); a client sends its name, never code.
//!
//! ## `threading.Thread`, `enumerate()` and daemon threads
//!
//! A [`Thread`](crate::Thread) is created, then started, then joined, as in Python. At the
//! end of `main` (or at `std::process::exit`) the program waits for its non-daemon threads
//! and abandons daemon ones.
//!
//! ```python
//! t = threading.Thread(target=worker, args=(3,), daemon=True)
//! t.start()
//! print(threading.enumerate())
//! t.join()
//! ```
//!
//! ```
//! use multiproc::{Thread, enumerate};
//! use std::time::Duration;
//! fn worker(n: u64) { std::thread::sleep(Duration::from_millis(n)); }
//! let t = Thread::builder().daemon(true).target_arg(worker, 30);
//! t.start().unwrap();
//! assert!(enumerate().contains(&t));
//! println!("{:?}", enumerate());
//! t.join().unwrap();
//! assert!(!t.is_alive());
//! assert!(!enumerate().contains(&t));
//! ```
//!
//! A `Timer` is a thread that waits first:
//!
//! ```
//! use multiproc::Timer;
//! use std::time::Duration;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let t = Timer::new(Duration::from_millis(20), move || tx.send("rang").unwrap());
//! t.start().unwrap();
//! assert_eq!(rx.recv().unwrap(), "rang");
//! let never = Timer::new(Duration::from_secs(3600), || unreachable!());
//! never.start().unwrap();
//! assert!(never.cancel());
//! ```
//!
//! `threading.local()` is Rust's [`thread_local!`]; see the [`threading`](crate::threading)
//! module.
//!
//! ## Talking to a Python program
//!
//! `Listener`/`Client` speak `multiprocessing.connection`'s protocol, and
//! [`send_pickle`](crate::Connection::send_pickle) / [`recv_pickle`](crate::Connection::recv_pickle)
//! are its `conn.send(obj)` / `conn.recv()` for plain data (None, bool, int, float, str,
//! bytes, list, tuple, dict). Here both ends are Rust:
//!
//! ```
//! use multiproc::connection::{Client, Listener};
//! use std::collections::HashMap;
//! let l = Listener::bind("127.0.0.1:0", Some(b"secret")).unwrap();
//! let addr = l.address().to_string();
//! let peer = std::thread::spawn(move || {
//!     let c = Client::connect(addr.as_str(), Some(b"secret")).unwrap();
//!     c.send_pickle(&HashMap::from([("answer", 42)])).unwrap(); // conn.send({"answer": 42})
//! });
//! let c = l.accept().unwrap();
//! let got: HashMap<String, i64> = c.recv_pickle().unwrap();
//! assert_eq!(got["answer"], 42);
//! peer.join().unwrap();
//! ```
