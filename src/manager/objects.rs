//! The objects a manager server holds, and every operation on them.
//!
//! Each object is type-erased bytes (the postcard encoding of the creator's values) behind
//! one mutex, so each operation is atomic: it runs entirely under that lock, after its
//! request was fully received and decoded. Blocking operations (queue `get`, lock
//! `acquire`, ...) wait on the object's condition variable in slices, checking the server's
//! shutdown flag and whether their client hung up.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{Blob, Kind, Op, Response, Wait, WireError};
use super::updates::Table;
use crate::connection::Connection;

/// In a semaphore's creation parameter: it is bounded by its initial value.
pub(crate) const BOUNDED: u64 = 1 << 63;

/// How often a waiting operation looks at the shutdown flag and its client's socket.
const SLICE: Duration = Duration::from_millis(50);

/// A lock's owner: the id of the connection (one per client thread) holding it.
#[derive(Default)]
struct LockState {
    owner: Option<u64>,
    depth: u32,
    /// The previous holder disconnected while holding it; told to the next acquirer.
    owner_died: bool,
}

enum State {
    Dict(HashMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Queue {
        items: VecDeque<Vec<u8>>,
        maxsize: Option<usize>,
        closed: bool,
    },
    /// field -> (type tag, bytes)
    Namespace(BTreeMap<String, (String, Vec<u8>)>),
    Value(Vec<u8>),
    Lock {
        lock: LockState,
        reentrant: bool,
    },
    Event(bool),
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    Condition {
        lock: LockState,
        waiting: VecDeque<u64>,
        notified: HashSet<u64>,
        next_ticket: u64,
    },
    Barrier {
        parties: u32,
        count: u32,
        generation: u64,
        resets: u64,
        broken: bool,
    },
}

/// One named object.
pub(crate) struct Object {
    pub id: u64,
    pub name: String,
    pub kind: Kind,
    pub tag: String,
    state: Mutex<State>,
    cv: Condvar,
}

/// What an operation knows about the request it serves.
pub(crate) struct Cx<'a> {
    /// The connection's id: the owner of the locks it takes.
    pub conn_id: u64,
    pub conn: &'a Connection,
    /// The update functions this server may run.
    pub updates: &'a Table,
    pub stopping: &'a AtomicBool,
    /// Objects whose lock this connection holds: released if it goes away.
    pub held: &'a mut Vec<Arc<Object>>,
}

enum Waited {
    Ready,
    TimedOut,
    /// The server is stopping, or the client hung up: give up without an answer.
    Abandon,
}

type R = Response<'static>;

fn err(e: WireError) -> R {
    Response::Err(e)
}

fn invalid(msg: impl Into<String>) -> R {
    err(WireError::InvalidArgument(msg.into()))
}

fn blob(b: Vec<u8>) -> Blob<'static> {
    Blob::owned(b)
}

fn maybe(b: Option<Vec<u8>>) -> R {
    Response::MaybeBlob(b.map(blob))
}

impl Object {
    /// A new object of `kind`; `param` and `init` are its creation arguments.
    pub(crate) fn new(
        id: u64,
        name: String,
        kind: Kind,
        tag: String,
        param: u64,
        init: Option<Vec<u8>>,
    ) -> Result<Object, WireError> {
        let state = match kind {
            Kind::Dict => State::Dict(HashMap::new()),
            Kind::List => State::List(Vec::new()),
            Kind::Queue => State::Queue {
                items: VecDeque::new(),
                maxsize: (param > 0).then_some(param as usize),
                closed: false,
            },
            Kind::Namespace => State::Namespace(BTreeMap::new()),
            Kind::Value => State::Value(init.ok_or_else(|| {
                WireError::InvalidArgument("a value needs an initial value".into())
            })?),
            Kind::Lock | Kind::RLock => State::Lock {
                lock: LockState::default(),
                reentrant: kind == Kind::RLock,
            },
            Kind::Event => State::Event(false),
            Kind::Semaphore => {
                let value = param & !BOUNDED;
                State::Semaphore {
                    value,
                    bound: (param & BOUNDED != 0).then_some(value),
                }
            }
            Kind::Condition => State::Condition {
                lock: LockState::default(),
                waiting: VecDeque::new(),
                notified: HashSet::new(),
                next_ticket: 0,
            },
            Kind::Barrier => {
                if param == 0 || param > u32::MAX as u64 {
                    return Err(WireError::InvalidArgument(format!(
                        "a barrier needs 1 to {} parties, not {param}",
                        u32::MAX
                    )));
                }
                State::Barrier {
                    parties: param as u32,
                    count: 0,
                    generation: 0,
                    resets: 0,
                    broken: false,
                }
            }
        };
        Ok(Object {
            id,
            name,
            kind,
            tag,
            state: Mutex::new(state),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs while the lock is held except inside `catch_unwind`, so a
        // poisoned lock cannot hide a half-done change.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter (the server is stopping).
    pub(crate) fn wake_all(&self) {
        let _g = self.lock();
        self.cv.notify_all();
    }

    /// Waits until `ready` holds, the wait runs out, or the request is abandoned.
    fn wait_until<'g>(
        &'g self,
        mut g: MutexGuard<'g, State>,
        wait: Wait,
        cx: &Cx<'_>,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> (MutexGuard<'g, State>, Waited) {
        let deadline = match wait {
            Wait::Micros(us) => Some(Instant::now() + Duration::from_micros(us)),
            _ => None,
        };
        loop {
            if ready(&mut g) {
                return (g, Waited::Ready);
            }
            let left = match (wait, deadline) {
                (Wait::No, _) => return (g, Waited::TimedOut),
                (_, Some(d)) => {
                    let now = Instant::now();
                    if now >= d {
                        return (g, Waited::TimedOut);
                    }
                    (d - now).min(SLICE)
                }
                _ => SLICE,
            };
            if cx.stopping.load(Ordering::Relaxed) {
                return (g, Waited::Abandon);
            }
            // A client that waits for an answer sends nothing: anything readable is its
            // end of stream (or a protocol violation). Either way nobody waits for us.
            if cx.conn.poll(Duration::ZERO).unwrap_or(true) {
                return (g, Waited::Abandon);
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Called when connection `conn_id` ends: releases the locks it holds.
    pub(crate) fn release_dead(&self, conn_id: u64) {
        let mut g = self.lock();
        let lock = match &mut *g {
            State::Lock { lock, .. } | State::Condition { lock, .. } => lock,
            _ => return,
        };
        if lock.owner == Some(conn_id) {
            lock.owner = None;
            lock.depth = 0;
            lock.owner_died = true;
            self.cv.notify_all();
        }
    }

    /// Applies one operation. `None`: the request was abandoned (no answer is sent).
    pub(crate) fn apply(self: &Arc<Self>, op: Op<'_>, cx: &mut Cx<'_>) -> Option<R> {
        let mut g = self.lock();
        let r = match (&mut *g, op) {
            (State::Dict(m), Op::Len) => Response::U64(m.len() as u64),
            (State::List(v), Op::Len) => Response::U64(v.len() as u64),
            (State::Queue { items, .. }, Op::Len) => Response::U64(items.len() as u64),
            (State::Dict(m), Op::Clear) => {
                m.clear();
                Response::Ok
            }
            (State::List(v), Op::Clear) => {
                v.clear();
                Response::Ok
            }
            // ---------------------------------------------------------------- dict
            (State::Dict(m), Op::DictInsert(k, v)) => maybe(m.insert(k.into_vec(), v.into_vec())),
            (State::Dict(m), Op::DictGet(k)) => maybe(m.get(&*k.0).cloned()),
            (State::Dict(m), Op::DictRemove(k)) => maybe(m.remove(&*k.0)),
            (State::Dict(m), Op::DictContains(k)) => Response::Bool(m.contains_key(&*k.0)),
            (State::Dict(m), Op::DictKeys) => {
                Response::Blobs(m.keys().map(|k| blob(k.clone())).collect())
            }
            (State::Dict(m), Op::DictValues) => {
                Response::Blobs(m.values().map(|v| blob(v.clone())).collect())
            }
            (State::Dict(m), Op::DictItems) => Response::Pairs(
                m.iter()
                    .map(|(k, v)| (blob(k.clone()), blob(v.clone())))
                    .collect(),
            ),
            (State::Dict(m), Op::DictUpdate(k, f, tag)) => {
                if tag != self.tag {
                    return Some(self.mismatch(&tag));
                }
                let key = k.into_vec();
                let obj = (self.name.as_str(), self.kind, self.tag.as_str());
                match cx.updates.run(&f, obj, m.get(&key).map(Vec::as_slice)) {
                    Ok(new) => {
                        m.insert(key, new.clone());
                        Response::Blob(blob(new))
                    }
                    Err(e) => err(e),
                }
            }
            // ---------------------------------------------------------------- list
            (State::List(v), Op::ListPush(x)) => {
                v.push(x.into_vec());
                Response::U64(v.len() as u64)
            }
            (State::List(v), Op::ListGet(i)) => maybe(v.get(i as usize).cloned()),
            (State::List(v), Op::ListSet(i, x)) => match v.get_mut(i as usize) {
                Some(slot) => {
                    *slot = x.into_vec();
                    Response::Ok
                }
                None => invalid(format!(
                    "index {i} is out of range for a list of length {}",
                    v.len()
                )),
            },
            (State::List(v), Op::ListPop) => maybe(v.pop()),
            (State::List(v), Op::ListExtend(xs)) => {
                v.extend(xs.into_iter().map(Blob::into_vec));
                Response::U64(v.len() as u64)
            }
            (State::List(v), Op::ListToVec) => {
                Response::Blobs(v.iter().map(|x| blob(x.clone())).collect())
            }
            // ---------------------------------------------------------------- queue
            (State::Queue { .. }, Op::QueuePut(x, wait)) => {
                let (mut g2, w) = self.wait_until(g, wait, cx, |s| match s {
                    State::Queue {
                        items,
                        maxsize,
                        closed,
                    } => *closed || maxsize.is_none_or(|m| items.len() < m),
                    _ => true,
                });
                let r = match (&mut *g2, w) {
                    (_, Waited::Abandon) => return None,
                    (State::Queue { closed: true, .. }, _) => {
                        err(WireError::Closed("the queue is closed".into()))
                    }
                    (State::Queue { items, .. }, Waited::Ready) => {
                        items.push_back(x.into_vec());
                        self.cv.notify_all();
                        Response::Ok
                    }
                    (_, _) => timed_out(wait, WireError::Full),
                };
                return Some(r);
            }
            (State::Queue { .. }, Op::QueueGet(wait)) => {
                let (mut g2, w) = self.wait_until(g, wait, cx, |s| match s {
                    State::Queue { items, closed, .. } => *closed || !items.is_empty(),
                    _ => true,
                });
                let r = match (&mut *g2, w) {
                    (_, Waited::Abandon) => return None,
                    (State::Queue { items, closed, .. }, _) => match items.pop_front() {
                        Some(x) => {
                            self.cv.notify_all();
                            Response::Blob(blob(x))
                        }
                        None if *closed => err(WireError::Closed("the queue is closed".into())),
                        None => timed_out(wait, WireError::Empty),
                    },
                    _ => unreachable!("the state of an object never changes kind"),
                };
                return Some(r);
            }
            (State::Queue { closed, .. }, Op::QueueClose) => {
                *closed = true;
                self.cv.notify_all();
                Response::Ok
            }
            (State::Queue { closed, .. }, Op::QueueIsClosed) => Response::Bool(*closed),
            (State::Queue { maxsize, .. }, Op::QueueMaxsize) => {
                Response::U64(maxsize.map_or(0, |m| m as u64))
            }
            // ---------------------------------------------------------------- namespace
            (State::Namespace(m), Op::NsSet(field, tag, x)) => {
                m.insert(field.into_owned(), (tag.into_owned(), x.into_vec()));
                Response::Ok
            }
            (State::Namespace(m), Op::NsGet(field, tag)) => match m.get(&*field) {
                None => err(WireError::NotFound(format!(
                    "field {field:?} of namespace {:?}",
                    self.name
                ))),
                Some((t, _)) if *t != tag => err(WireError::TypeMismatch {
                    name: format!("{}.{field}", self.name),
                    expected: tag.into_owned(),
                    found: t.clone(),
                }),
                Some((_, x)) => Response::Blob(blob(x.clone())),
            },
            (State::Namespace(m), Op::NsRemove(field)) => {
                Response::Bool(m.remove(&*field).is_some())
            }
            (State::Namespace(m), Op::NsFields) => Response::Names(m.keys().cloned().collect()),
            // ---------------------------------------------------------------- value
            (State::Value(v), Op::ValueGet) => Response::Blob(blob(v.clone())),
            (State::Value(v), Op::ValueSet(x)) => {
                *v = x.into_vec();
                Response::Ok
            }
            (State::Value(v), Op::ValueUpdate(f, tag)) => {
                if tag != self.tag {
                    return Some(self.mismatch(&tag));
                }
                let obj = (self.name.as_str(), self.kind, self.tag.as_str());
                match cx.updates.run(&f, obj, Some(v)) {
                    Ok(new) => {
                        *v = new.clone();
                        Response::Blob(blob(new))
                    }
                    Err(e) => err(e),
                }
            }
            // ---------------------------------------------------------------- locks
            (State::Lock { .. } | State::Condition { .. }, Op::Acquire(wait)) => {
                return self.acquire(g, wait, cx);
            }
            (State::Lock { lock, .. } | State::Condition { lock, .. }, Op::Release) => {
                if lock.owner != Some(cx.conn_id) {
                    invalid("release of a lock this thread does not hold")
                } else {
                    lock.depth -= 1;
                    if lock.depth == 0 {
                        lock.owner = None;
                        cx.held.retain(|o| !Arc::ptr_eq(o, self));
                        self.cv.notify_all();
                    }
                    Response::Ok
                }
            }
            (State::Lock { lock, .. } | State::Condition { lock, .. }, Op::Locked) => {
                Response::Bool(lock.owner.is_some())
            }
            // ---------------------------------------------------------------- event
            (State::Event(e), Op::EventSet) => {
                *e = true;
                self.cv.notify_all();
                Response::Ok
            }
            (State::Event(e), Op::EventClear) => {
                *e = false;
                Response::Ok
            }
            (State::Event(e), Op::EventIsSet) => Response::Bool(*e),
            (State::Event(_), Op::EventWait(wait)) => {
                let (_g, w) = self.wait_until(g, wait, cx, |s| matches!(s, State::Event(true)));
                return match w {
                    Waited::Abandon => None,
                    w => Some(Response::Bool(matches!(w, Waited::Ready))),
                };
            }
            // ---------------------------------------------------------------- semaphore
            (State::Semaphore { .. }, Op::Acquire(wait)) => {
                let (_g, w) = self.wait_until(g, wait, cx, |s| match s {
                    State::Semaphore { value, .. } if *value > 0 => {
                        *value -= 1;
                        true
                    }
                    _ => false,
                });
                return match w {
                    Waited::Abandon => None,
                    w => Some(Response::Bool(matches!(w, Waited::Ready))),
                };
            }
            (State::Semaphore { value, bound }, Op::SemRelease(n)) => {
                let new = *value + n as u64;
                if bound.is_some_and(|b| new > b) {
                    invalid("a bounded semaphore was released more times than acquired")
                } else {
                    *value = new;
                    self.cv.notify_all();
                    Response::Ok
                }
            }
            (State::Semaphore { value, .. }, Op::SemValue) => Response::U64(*value),
            // ---------------------------------------------------------------- condition
            (State::Condition { .. }, Op::CondWait(wait)) => return self.cond_wait(g, wait, cx),
            (
                State::Condition {
                    lock,
                    waiting,
                    notified,
                    ..
                },
                Op::CondNotify(n),
            ) => {
                if lock.owner != Some(cx.conn_id) {
                    invalid("notify on a condition whose lock this thread does not hold")
                } else {
                    for _ in 0..n {
                        match waiting.pop_front() {
                            Some(t) => notified.insert(t),
                            None => break,
                        };
                    }
                    self.cv.notify_all();
                    Response::Ok
                }
            }
            (
                State::Condition {
                    lock,
                    waiting,
                    notified,
                    ..
                },
                Op::CondNotifyAll,
            ) => {
                if lock.owner != Some(cx.conn_id) {
                    invalid("notify on a condition whose lock this thread does not hold")
                } else {
                    notified.extend(waiting.drain(..));
                    self.cv.notify_all();
                    Response::Ok
                }
            }
            // ---------------------------------------------------------------- barrier
            (State::Barrier { .. }, Op::BarrierWait(wait)) => {
                return self.barrier_wait(g, wait, cx);
            }
            (State::Barrier { broken, .. }, Op::BarrierAbort) => {
                *broken = true;
                self.cv.notify_all();
                Response::Ok
            }
            (
                State::Barrier {
                    count,
                    resets,
                    broken,
                    ..
                },
                Op::BarrierReset,
            ) => {
                *count = 0;
                *resets += 1;
                *broken = false;
                self.cv.notify_all();
                Response::Ok
            }
            (
                State::Barrier {
                    parties,
                    count,
                    broken,
                    ..
                },
                Op::BarrierInfo,
            ) => Response::BarrierInfo(*parties, *count, *broken),
            (_, op) => invalid(format!(
                "operation {} does not apply to {:?}, a {}",
                op_name(&op),
                self.name,
                self.kind.name()
            )),
        };
        Some(r)
    }

    fn mismatch(&self, tag: &str) -> R {
        err(WireError::TypeMismatch {
            name: self.name.clone(),
            expected: tag.to_string(),
            found: self.tag.clone(),
        })
    }

    fn acquire(
        self: &Arc<Self>,
        g: MutexGuard<'_, State>,
        wait: Wait,
        cx: &mut Cx<'_>,
    ) -> Option<R> {
        let me = cx.conn_id;
        let mut again = false;
        let (mut g, w) = self.wait_until(g, wait, cx, |s| match s {
            State::Lock { lock, reentrant } => {
                if lock.owner == Some(me) && !*reentrant {
                    again = true;
                    return true;
                }
                lock.owner.is_none() || lock.owner == Some(me)
            }
            State::Condition { lock, .. } => {
                if lock.owner == Some(me) {
                    again = true;
                    return true;
                }
                lock.owner.is_none()
            }
            _ => true,
        });
        if again {
            return Some(invalid(
                "this thread already holds the lock (it is not reentrant: use an rlock)",
            ));
        }
        match w {
            Waited::Abandon => None,
            Waited::TimedOut => Some(Response::Bool(false)),
            Waited::Ready => {
                let lock = match &mut *g {
                    State::Lock { lock, .. } | State::Condition { lock, .. } => lock,
                    _ => unreachable!("acquire is only called on locks"),
                };
                if lock.owner == Some(me) {
                    lock.depth += 1;
                    return Some(Response::Acquired { owner_died: false });
                }
                lock.owner = Some(me);
                lock.depth = 1;
                let owner_died = std::mem::take(&mut lock.owner_died);
                cx.held.push(self.clone());
                Some(Response::Acquired { owner_died })
            }
        }
    }

    fn cond_wait(
        self: &Arc<Self>,
        mut g: MutexGuard<'_, State>,
        wait: Wait,
        cx: &mut Cx<'_>,
    ) -> Option<R> {
        let me = cx.conn_id;
        let ticket = match &mut *g {
            State::Condition {
                lock,
                waiting,
                next_ticket,
                ..
            } => {
                if lock.owner != Some(me) {
                    return Some(invalid(
                        "wait on a condition whose lock this thread does not hold",
                    ));
                }
                lock.owner = None;
                lock.depth = 0;
                *next_ticket += 1;
                waiting.push_back(*next_ticket);
                *next_ticket
            }
            _ => unreachable!("cond_wait is only called on conditions"),
        };
        cx.held.retain(|o| !Arc::ptr_eq(o, self));
        self.cv.notify_all();
        let (mut g, w) = self.wait_until(g, wait, cx, |s| match s {
            State::Condition { notified, .. } => notified.contains(&ticket),
            _ => true,
        });
        if let State::Condition {
            waiting, notified, ..
        } = &mut *g
        {
            waiting.retain(|&t| t != ticket);
            notified.remove(&ticket);
        }
        if matches!(w, Waited::Abandon) {
            return None;
        }
        // Take the lock back, however long it takes (Python's rule).
        let (mut g, w2) = self.wait_until(g, Wait::Forever, cx, |s| match s {
            State::Condition { lock, .. } => lock.owner.is_none(),
            _ => true,
        });
        if matches!(w2, Waited::Abandon) {
            return None;
        }
        if let State::Condition { lock, .. } = &mut *g {
            lock.owner = Some(me);
            lock.depth = 1;
            lock.owner_died = false;
        }
        cx.held.push(self.clone());
        Some(Response::Bool(matches!(w, Waited::Ready)))
    }

    fn barrier_wait(
        self: &Arc<Self>,
        mut g: MutexGuard<'_, State>,
        wait: Wait,
        cx: &mut Cx<'_>,
    ) -> Option<R> {
        let (gen0, resets0, index) = match &mut *g {
            State::Barrier {
                parties,
                count,
                generation,
                resets,
                broken,
            } => {
                if *broken {
                    return Some(err(WireError::BrokenBarrier));
                }
                let index = *count;
                *count += 1;
                if *count == *parties {
                    *count = 0;
                    *generation += 1;
                    self.cv.notify_all();
                    return Some(Response::U64(index as u64));
                }
                (*generation, *resets, index)
            }
            _ => unreachable!("barrier_wait is only called on barriers"),
        };
        let (mut g, w) = self.wait_until(g, wait, cx, |s| match s {
            State::Barrier {
                generation,
                resets,
                broken,
                ..
            } => *generation != gen0 || *resets != resets0 || *broken,
            _ => true,
        });
        let State::Barrier {
            generation,
            resets,
            broken,
            count,
            ..
        } = &mut *g
        else {
            unreachable!("barrier_wait is only called on barriers")
        };
        if *generation != gen0 {
            return Some(Response::U64(index as u64));
        }
        if !matches!(w, Waited::Ready) && *resets == resets0 {
            // Timed out or gone: the barrier is broken for everyone (Python's rule), so
            // the others do not wait forever for a party that will never come.
            *broken = true;
            *count = count.saturating_sub(1);
            self.cv.notify_all();
        }
        match w {
            Waited::Abandon => None,
            _ => Some(err(WireError::BrokenBarrier)),
        }
    }
}

fn timed_out(wait: Wait, immediate: WireError) -> R {
    match wait {
        Wait::Micros(us) => err(WireError::Timeout(us)),
        _ => err(immediate),
    }
}

fn op_name(op: &Op<'_>) -> String {
    let s = format!("{op:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}
