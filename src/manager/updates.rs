//! The update functions a manager server may run (`Dict::update`, `Value::update`): a table
//! fixed when the server starts, from [`ManagerBuilder::update_fn`](super::ManagerBuilder::update_fn).
//!
//! A client names a function (its path, `std::any::type_name` of the fn item); the server
//! looks the name up in its table and checks the function's value type against the object's.
//! Nothing a client sends is ever turned into a code address: an unknown name is an
//! `Error::NotFound`, a function over another type an `Error::TypeMismatch`. The table
//! reaches a server child process in its start arguments, from the parent that built it, the
//! way every `Process` receives its target (see `README.md`).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Kind, WireError};
use crate::error::{Error, Result, TaskError};
use crate::sys::code::TaskFn;

/// The [`UpdateFn`] argument shape of a function that takes `Option<V>` (`None`: the key is
/// absent): the shape [`Dict::update`](super::Dict::update) runs, also usable by
/// [`Value::update`](super::Value::update) (which always passes `Some`).
#[derive(Debug)]
pub enum TakesOption {}

/// The [`UpdateFn`] argument shape of a function that takes `V` itself: the shape
/// [`Value::update`](super::Value::update) runs.
#[derive(Debug)]
pub enum TakesValue {}

mod sealed {
    /// Implemented for the two shapes of [`UpdateFn`](super::UpdateFn) only.
    pub trait Sealed<V, Args> {
        /// What the registry records for this function.
        fn entry(self) -> super::Entry;
    }
}

/// A function a manager may be allowed to run on its stored values: a `fn` item (or any
/// zero-sized `Fn`) of the shape `fn(Option<V>) -> V` ([`TakesOption`]) or `fn(V) -> V`
/// ([`TakesValue`]). Register it with
/// [`ManagerBuilder::update_fn`](super::ManagerBuilder::update_fn); clients then call it by
/// passing the same function to `update`.
///
/// ```standalone_crate
/// # multiproc::init();
/// fn double(x: f64) -> f64 { x * 2.0 }
/// fn bump(n: Option<u32>) -> u32 { n.unwrap_or(0) + 1 }
/// let m = multiproc::Manager::builder()
///     .thread(true)
///     .update_fn(double)
///     .update_fn(bump)
///     .start()
///     .unwrap();
/// assert_eq!(m.value("x", 1.5).unwrap().update(double).unwrap(), 3.0);
/// assert_eq!(m.dict::<u8, u32>("d").unwrap().update(&0, bump).unwrap(), 1);
/// ```
pub trait UpdateFn<V, Args>: sealed::Sealed<V, Args> + Copy + Send + Sync + 'static {}

impl<V, Args, F> UpdateFn<V, Args> for F where
    F: sealed::Sealed<V, Args> + Copy + Send + Sync + 'static
{
}

impl<V, F> sealed::Sealed<V, TakesOption> for F
where
    F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn entry(self) -> Entry {
        Entry {
            name: name_of::<F>().to_string(),
            value_type: std::any::type_name::<V>().to_string(),
            takes_option: true,
            code: crate::bootstrap::ship_task::<F, Option<V>, V>(self),
        }
    }
}

impl<V, F> sealed::Sealed<V, TakesValue> for F
where
    F: Fn(V) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn entry(self) -> Entry {
        let f = self;
        // The server passes `Some` to a function that takes the value itself: it refuses to
        // run one on a dict, whose key may be absent.
        let code = crate::bootstrap::ship_task::<_, Option<V>, V>(move |v: Option<V>| match v {
            Some(v) => f(v),
            None => unreachable!("the manager runs a `fn(V) -> V` only on a present value"),
        });
        Entry {
            name: name_of::<F>().to_string(),
            value_type: std::any::type_name::<V>().to_string(),
            takes_option: false,
            code,
        }
    }
}

/// The name a client sends for `F`, and the server knows it by.
pub(crate) fn name_of<F>() -> &'static str {
    std::any::type_name::<F>()
}

/// A closure's type name (`path::{{closure}}`) is shared by every closure of its
/// function, so it names none of them: only `fn` items can be registered and called (a
/// `fn` declared inside a closure, `path::{{closure}}::f`, has a name).
pub(crate) fn check_nameable(name: &str) -> Result<()> {
    if name.ends_with("{{closure}}") {
        return Err(Error::InvalidArgument(format!(
            "`{name}` is a closure: a manager runs only update functions registered by name, \
             and a closure has none; write it as a `fn` item and register it with \
             ManagerBuilder::update_fn"
        )));
    }
    Ok(())
}

/// One registered function as it travels to a server child: its name, its value type and
/// the code offset of its thunk (valid in this build only: it goes from a parent to the
/// child it starts, never over a client connection). Public only in name, as the sealed
/// trait's return type: nothing outside the crate can make or read one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    name: String,
    value_type: String,
    takes_option: bool,
    code: i64,
}

/// The builder's list of registered functions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    entries: Vec<Entry>,
    /// The first registration that was refused, reported by `start`.
    error: Option<String>,
}

impl Registry {
    pub(crate) fn add<V, Args, F: UpdateFn<V, Args>>(&mut self, f: F) {
        let e = sealed::Sealed::entry(f);
        if let Err(err) = check_nameable(&e.name) {
            self.error.get_or_insert(err.to_string());
            return;
        }
        match self.entries.iter().find(|x| x.name == e.name) {
            // The same function registered twice.
            Some(x) if x.code == e.code => {}
            Some(_) => {
                self.error.get_or_insert(format!(
                    "two different update functions are both named `{}`",
                    e.name
                ));
            }
            None => self.entries.push(e),
        }
    }

    /// The entries, or the first refused registration.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        match &self.error {
            Some(e) => Err(Error::InvalidArgument(e.clone())),
            None => Ok(self.entries.clone()),
        }
    }
}

struct Resolved {
    value_type: String,
    takes_option: bool,
    thunk: TaskFn<crate::bootstrap::TaskCtx>,
}

/// A server's table: name -> function.
#[derive(Default)]
pub(crate) struct Table(HashMap<String, Resolved>);

impl Table {
    /// Builds the table from entries made by `Registry::add` in this process or in the
    /// parent that started this server (the same build: a `Process` child runs its
    /// parent's binary, checked by the bootstrap's build-id handshake).
    pub(crate) fn new(entries: Vec<Entry>) -> Table {
        Table(
            entries
                .into_iter()
                .map(|e| {
                    let r = Resolved {
                        value_type: e.value_type,
                        takes_option: e.takes_option,
                        thunk: crate::bootstrap::unship_task(e.code),
                    };
                    (e.name, r)
                })
                .collect(),
        )
    }

    /// Runs the function called `name` on the current value's bytes (`None`: absent) of
    /// the object `obj` (of `kind` and `tag`), and returns the new value's bytes. An unknown
    /// name, or a function over another type than the object's, is refused; a panic in the
    /// function fails this request only.
    pub(crate) fn run(
        &self,
        name: &str,
        obj: (&str, Kind, &str),
        current: Option<&[u8]>,
    ) -> Result<Vec<u8>, WireError> {
        let (obj_name, kind, tag) = obj;
        let Some(f) = self.0.get(name) else {
            return Err(WireError::NotFound(format!(
                "no update function `{name}` is registered on this manager (the server \
                 registers the functions it may run with ManagerBuilder::update_fn)"
            )));
        };
        let fits = match kind {
            Kind::Value => {
                tag.strip_prefix("value<").and_then(|t| t.strip_suffix('>'))
                    == Some(f.value_type.as_str())
            }
            // A dict's tag is `dict<K, V>`; a type name has balanced brackets, so `, V>`
            // at its end can only be the value type.
            Kind::Dict => {
                f.takes_option
                    && tag.starts_with("dict<")
                    && tag
                        .strip_suffix('>')
                        .and_then(|t| t.strip_suffix(f.value_type.as_str()))
                        .is_some_and(|t| t.ends_with(", "))
            }
            _ => false,
        };
        if !fits {
            let arg = if f.takes_option {
                format!("Option<{}>", f.value_type)
            } else {
                f.value_type.clone()
            };
            return Err(WireError::TypeMismatch {
                name: obj_name.to_string(),
                expected: tag.to_string(),
                found: format!("the update function `{name}` over `{arg}`"),
            });
        }
        run_thunk(f.thunk, current)
    }
}

/// Calls a task thunk on `Option<current>` and returns the new value's bytes.
fn run_thunk(
    thunk: TaskFn<crate::bootstrap::TaskCtx>,
    current: Option<&[u8]>,
) -> Result<Vec<u8>, WireError> {
    // The thunk reads one framed value (`[u32 len][postcard]`, as pool tasks do) of type
    // `Option<V>`: postcard writes `None` as 0, `Some(v)` as 1 + v.
    let body = 1 + current.map_or(0, <[u8]>::len);
    let Ok(len) = u32::try_from(body) else {
        return Err(WireError::Task(TaskError::Serialize {
            index: None,
            type_name: "the current value".into(),
            message: format!("a value of {body} bytes is too large"),
        }));
    };
    let mut input = Vec::with_capacity(4 + body);
    input.extend_from_slice(&len.to_le_bytes());
    match current {
        Some(b) => {
            input.push(1);
            input.extend_from_slice(b);
        }
        None => input.push(0),
    }
    let mut out = Vec::new();
    let ctx = crate::bootstrap::TaskCtx {
        pid: std::process::id(),
    };
    if thunk(&mut &input[..], &mut out, &ctx) {
        // A success is the new value, framed: drop the length.
        Ok(out.split_off(4.min(out.len())))
    } else {
        Err(WireError::Task(
            postcard::from_bytes::<TaskError>(&out).unwrap_or_else(|e| TaskError::Remote {
                index: None,
                message: format!("the update function failed in an unreadable way: {e}"),
            }),
        ))
    }
}
