//! Telling a failed allocation from any other abort: a SIGABRT handler that looks for std's
//! allocation-failure path on the aborting thread's stack.
//!
//! Rust aborts when an allocation fails (`handle_alloc_error`), and stable Rust has no hook
//! to run first (`set_alloc_error_hook` is unstable). So a worker under a memory limit
//! installs a SIGABRT handler that scans the interrupted stack for a return address into
//! that path: `alloc::alloc::handle_alloc_error`, `__rust_alloc_error_handler` and
//! `std::alloc::rust_oom` (their extents come from the program's own symbol table, read
//! once with [`alloc_error_code`]). None of them ever returns, so a return address into one
//! of them on a live stack means an allocation failure is what is aborting. If one is
//! found, the handler sets a flag (a word in the pool's shared memory); either way it then
//! lets SIGABRT kill the process as it would have.
//!
//! Limits: a `malloc` failure in C code that then aborts is not recognised (it never enters
//! Rust's path); nor is one in a binary built without a symbol table (`strip = true`),
//! except through a fallback window of [`FALLBACK_WINDOW`] bytes after
//! `handle_alloc_error`'s address; nor, on threads other than the one that installed the
//! handler, where `process_vm_readv` is forbidden (seccomp). With the unstable `-Zoom=panic`
//! a caught allocation failure could leave a stale return address behind that a later
//! abort would find.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// A window of code where a return address means "inside std's allocation-failure path":
/// `(lo, hi]` in bytes, relative to `handle_alloc_error`'s address. (A return address points
/// just past its call; a function whose last instruction is the call has one at its end.)
pub(crate) type Window = (i64, i64);

/// Used when the symbol table cannot be read: `handle_alloc_error` is a few instructions
/// ending in a call (19 bytes on x86-64 with Rust 1.95).
pub(crate) const FALLBACK_WINDOW: i64 = 24;

/// At most this many windows are watched.
const MAX_WINDOWS: usize = 16;

/// How far above the interrupted stack pointer the handler looks. The frames of the failure
/// path are the innermost few (abort, rust_oom, handle_alloc_error): well inside this.
const SCAN_BYTES: usize = 64 * 1024;

fn anchor() -> usize {
    std::alloc::handle_alloc_error as fn(std::alloc::Layout) -> ! as usize
}

/// The windows of std's allocation-failure code in this program, found once per process in
/// its own symbol table (`/proc/self/exe`); the fallback window if it has none.
pub(crate) fn alloc_error_code() -> &'static [Window] {
    static CODE: OnceLock<Vec<Window>> = OnceLock::new();
    CODE.get_or_init(|| {
        std::fs::File::open("/proc/self/exe")
            .ok()
            .and_then(|f| failure_path_windows(&mut |off, buf| f.read_exact_at(buf, off)))
            .unwrap_or_else(|| vec![(0, FALLBACK_WINDOW)])
    })
}

/// Whether a function's (mangled) name is on std's allocation-failure path. Legacy and v0
/// manglings both spell each path component as `<len><name>`.
fn on_failure_path(name: &[u8]) -> bool {
    let has = |s: &[u8]| name.windows(s.len()).any(|w| w == s);
    has(b"5alloc5alloc18handle_alloc_error")
        || has(b"__rust_alloc_error_handler")
        || has(b"3std5alloc8rust_oom")
        || has(b"__rg_oom")
        || has(b"__rdl_oom")
}

/// Whether `name` is `alloc::alloc::handle_alloc_error` itself (not a closure inside it).
fn is_anchor(name: &[u8]) -> bool {
    const P: &[u8] = b"5alloc5alloc18handle_alloc_error";
    name.ends_with(P) // v0
        || name.strip_prefix(b"_ZN5alloc5alloc18handle_alloc_error17h").is_some_and(|h| {
            h.len() == 17 && h.ends_with(b"E") // legacy: 16 hex digits of hash, then E
        })
}

/// Reads a 64-bit little-endian ELF's symbol table through `read(offset, buf)` and returns
/// the windows of the failure path relative to `handle_alloc_error`, or `None` if the file
/// is not such an ELF, has no symbol table, or lacks `handle_alloc_error`. Trusts nothing:
/// every offset and size is checked before use, and tables are capped at 256 MiB.
fn failure_path_windows(
    read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Option<Vec<Window>> {
    const CAP: u64 = 256 << 20;
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let mut read_vec = |off: u64, len: u64| -> Option<Vec<u8>> {
        if len > CAP {
            return None;
        }
        let mut v = vec![0u8; len as usize];
        read(off, &mut v).ok()?;
        Some(v)
    };
    let eh = read_vec(0, 64)?;
    // Magic, 64-bit, little-endian.
    if eh[..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(&eh, 0x28), u16_at(&eh, 0x3a), u16_at(&eh, 0x3c));
    if shentsize < 64 {
        return None;
    }
    let shdrs = read_vec(shoff, shentsize as u64 * shnum as u64)?;
    let shdr = |i: usize| -> Option<&[u8]> {
        let o = i.checked_mul(shentsize as usize)?;
        shdrs.get(o..o + 64)
    };
    // Section: type at 4, offset at 0x18, size at 0x20, link at 0x28, entsize at 0x38.
    let symtab = (0..shnum as usize)
        .filter_map(shdr)
        .find(|s| u32_at(s, 4) == 2 /* SHT_SYMTAB */)?;
    let strtab = shdr(u32_at(symtab, 0x28) as usize)?;
    if u64_at(symtab, 0x38) != 24 {
        return None;
    }
    let syms = read_vec(u64_at(symtab, 0x18), u64_at(symtab, 0x20))?;
    let strs = read_vec(u64_at(strtab, 0x18), u64_at(strtab, 0x20))?;
    let mut anchor: Option<(u64, u64)> = None;
    let mut found: Vec<(u64, u64)> = Vec::new();
    for sym in syms.chunks_exact(24) {
        // Elf64_Sym: name u32, info u8, other u8, shndx u16, value u64, size u64.
        let (value, size) = (u64_at(sym, 8), u64_at(sym, 16));
        if sym[4] & 0xf != 2 /* STT_FUNC */ || size == 0 || value == 0 {
            continue;
        }
        let Some(name) = strs.get(u32_at(sym, 0) as usize..) else {
            continue;
        };
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if !on_failure_path(name) {
            continue;
        }
        if is_anchor(name) {
            anchor = Some((value, size));
        }
        found.push((value, size));
    }
    let (base, _) = anchor?;
    found.sort_unstable();
    found.dedup();
    Some(
        found
            .into_iter()
            .take(MAX_WINDOWS)
            .map(|(v, s)| {
                let lo = v.wrapping_sub(base) as i64;
                (lo, lo.saturating_add(s as i64))
            })
            .collect(),
    )
}

// What the handler reads. Plain atomics: loads and stores of them are async-signal-safe.
static WINDOWS: [AtomicUsize; 2 * MAX_WINDOWS] = [const { AtomicUsize::new(0) }; 2 * MAX_WINDOWS];
static N_WINDOWS: AtomicUsize = AtomicUsize::new(0);
static STACK_LO: AtomicUsize = AtomicUsize::new(0);
static STACK_HI: AtomicUsize = AtomicUsize::new(0);
static FLAG: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
/// The process that installed the handler: a child it forks inherits the handler and the
/// mapping, but its aborts are not this process's.
static PID: AtomicI32 = AtomicI32::new(0);

/// From now on, a SIGABRT whose stack shows std's allocation-failure path (the windows
/// from [`alloc_error_code`], possibly computed in another process running the same
/// executable: they are relative) sets `flag` to 1 before the process dies of it.
///
/// Call on the thread that will run the code to watch (its stack is scanned directly; other
/// threads' stacks through `process_vm_readv`), before a memory limit is set (this reads
/// `/proc/self/maps` for the main thread's stack).
pub(crate) fn flag_allocation_failures(
    code: &[Window],
    flag: &'static AtomicU32,
) -> io::Result<()> {
    let base = anchor();
    let n = code.len().min(MAX_WINDOWS);
    for (i, &(lo, hi)) in code[..n].iter().enumerate() {
        WINDOWS[2 * i].store(base.wrapping_add_signed(lo as isize), Ordering::Relaxed);
        WINDOWS[2 * i + 1].store(base.wrapping_add_signed(hi as isize), Ordering::Relaxed);
    }
    N_WINDOWS.store(n, Ordering::Relaxed);
    let (lo, hi) = current_stack()?;
    STACK_LO.store(lo, Ordering::Relaxed);
    STACK_HI.store(hi, Ordering::Relaxed);
    FLAG.store(flag as *const AtomicU32 as *mut AtomicU32, Ordering::SeqCst);
    PID.store(
        rustix::process::getpid().as_raw_nonzero().get(),
        Ordering::SeqCst,
    );
    // SAFETY: a zeroed sigaction is a valid starting point; we set a handler of the
    // SA_SIGINFO signature, an empty mask, and flags. SA_RESETHAND restores the default
    // action on entry, so the handler's re-raise kills the process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_abort as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGABRT, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread's stack, `[lo, hi)`.
fn current_stack() -> io::Result<(usize, usize)> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and destroyed
    // once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok((addr as usize, addr as usize + size))
    }
}

/// Whether `word` is a return address into a watched window.
fn in_failure_path(word: usize) -> bool {
    let n = N_WINDOWS.load(Ordering::Relaxed);
    (0..n).any(|i| {
        let lo = WINDOWS[2 * i].load(Ordering::Relaxed);
        let hi = WINDOWS[2 * i + 1].load(Ordering::Relaxed);
        word > lo && word <= hi
    })
}

/// The stack pointer of the code the signal interrupted.
fn interrupted_sp(ctx: *mut libc::c_void) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: with SA_SIGINFO the kernel passes a valid ucontext_t as the third argument.
        unsafe {
            (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RSP as usize] as usize
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.sp as usize }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // The handler runs on the interrupted stack (no SA_ONSTACK), below its frames.
        let _ = ctx;
        let here = 0u8;
        &here as *const u8 as usize
    }
}

/// Scans the words in `[sp, end)` of the installing thread's own stack.
fn scan_own_stack(sp: usize, end: usize) -> bool {
    let mut p = sp.next_multiple_of(size_of::<usize>());
    while p + size_of::<usize>() <= end {
        // SAFETY: `[sp, STACK_HI)` is the live part of this thread's stack, mapped and
        // readable (the caller checked `sp` is inside the bounds taken at install time, and
        // `end` is at most `STACK_HI`). The thread is stopped in this handler, so nothing
        // writes those frames meanwhile; a volatile read of an integer has no other effect.
        let word =
            unsafe { std::ptr::read_volatile(std::ptr::with_exposed_provenance::<usize>(p)) };
        if in_failure_path(word) {
            return true;
        }
        p += size_of::<usize>();
    }
    false
}

/// Scans up to `len` bytes from `sp` on any thread's stack, a page at a time through
/// `process_vm_readv`, which reports an unmapped page as an error instead of faulting.
fn scan_other_stack(sp: usize, len: usize) -> bool {
    let mut buf = [0usize; 512]; // one 4 KiB page
    let mut p = sp.next_multiple_of(size_of::<usize>());
    let end = sp.saturating_add(len);
    while p < end {
        let chunk = (4096 - p % 4096).min(end - p);
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: chunk,
        };
        let remote = libc::iovec {
            iov_base: std::ptr::with_exposed_provenance_mut(p),
            iov_len: chunk,
        };
        // SAFETY: `local` describes `buf` (chunk ≤ 4096 bytes); the kernel checks the remote
        // range and fails instead of faulting. getpid and process_vm_readv are system calls,
        // async-signal-safe.
        let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if got != chunk as isize {
            return false;
        }
        if buf[..chunk / size_of::<usize>()]
            .iter()
            .any(|&w| in_failure_path(w))
        {
            return true;
        }
        p += chunk;
    }
    false
}

/// The SIGABRT handler. Async-signal-safe: atomics, reads of memory and system calls only;
/// no allocation, no lock.
extern "C" fn on_abort(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let flag = FLAG.load(Ordering::SeqCst);
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let me = unsafe { libc::getpid() };
    if !flag.is_null() && me == PID.load(Ordering::SeqCst) && failure_path_on_stack(ctx) {
        // SAFETY: FLAG was set from a `&'static AtomicU32`.
        unsafe { (*flag).store(1, Ordering::SeqCst) };
    }
    // SA_RESETHAND restored the default action; the signal is blocked until we return, so
    // this re-raise kills the process then, whoever sent the first one.
    // SAFETY: raise is async-signal-safe and has no preconditions.
    unsafe { libc::raise(sig) };
}

/// Whether the interrupted stack holds a return address into the failure path.
fn failure_path_on_stack(ctx: *mut libc::c_void) -> bool {
    let sp = interrupted_sp(ctx);
    let (lo, hi) = (
        STACK_LO.load(Ordering::Relaxed),
        STACK_HI.load(Ordering::Relaxed),
    );
    if sp >= lo && sp < hi {
        scan_own_stack(sp, hi.min(sp.saturating_add(SCAN_BYTES)))
    } else {
        scan_other_stack(sp, SCAN_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_path_is_found_in_this_binary() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let w = failure_path_windows(&mut |off, buf| f.read_exact_at(buf, off))
            .expect("a test binary has a symbol table with handle_alloc_error");
        // handle_alloc_error itself, at offset 0, a few instructions long.
        let (_, end) = *w
            .iter()
            .find(|&&(lo, _)| lo == 0)
            .expect("handle_alloc_error");
        // The fallback for stripped binaries covers it (and so its return address).
        assert!(end > 0 && end <= FALLBACK_WINDOW, "{w:?}");
        // And the rest of the path (__rust_alloc_error_handler, rust_oom).
        assert!(w.len() >= 3, "{w:?}");
        assert!(
            !in_failure_path(anchor()),
            "a function's own address is not a return address"
        );
    }

    #[test]
    fn arbitrary_files_are_refused_without_panicking() {
        // xorshift64
        let mut x = 0x05ee_de1f_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..2000 {
            let len = next() % 4096;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if case % 2 == 0 && bytes.len() >= 64 {
                bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
                // Small section-table fields, so some cases reach the tables.
                bytes[0x28..0x30].copy_from_slice(&(next() % 4096).to_le_bytes());
                bytes[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
                bytes[0x3c..0x3e].copy_from_slice(&((next() % 64) as u16).to_le_bytes());
            }
            let mut read = |off: u64, buf: &mut [u8]| -> io::Result<()> {
                let b = usize::try_from(off)
                    .ok()
                    .and_then(|o| bytes.get(o..o.checked_add(buf.len())?));
                buf.copy_from_slice(b.ok_or(io::ErrorKind::UnexpectedEof)?);
                Ok(())
            };
            if let Some(w) = failure_path_windows(&mut read) {
                assert!(w.len() <= MAX_WINDOWS);
            }
        }
    }

    #[test]
    fn both_scans_find_a_planted_return_address_and_never_fault() {
        let (lo, hi) = current_stack().unwrap();
        let here = std::hint::black_box(0u8);
        let here = &here as *const u8 as usize;
        assert!(lo <= here && here < hi, "{lo:#x} {here:#x} {hi:#x}");
        // The only test that sets windows; the others only read them.
        WINDOWS[0].store(anchor(), Ordering::Relaxed);
        WINDOWS[1].store(anchor() + 10, Ordering::Relaxed);
        N_WINDOWS.store(1, Ordering::Relaxed);
        let planted = std::hint::black_box([0, anchor() + 10, 0, 0]);
        let at = planted.as_ptr() as usize;
        assert!(scan_own_stack(at, at + 32));
        assert!(!scan_own_stack(at + 16, at + 32));
        assert!(scan_other_stack(at, 32));
        assert!(!scan_other_stack(at + 16, 16));
        // An unmapped page is an error for process_vm_readv, not a fault.
        assert!(!scan_other_stack(4096, 4096));
        N_WINDOWS.store(0, Ordering::Relaxed);
    }

    #[test]
    fn names_on_the_path_are_recognised() {
        assert!(is_anchor(
            b"_RNvNtCslNYArtu3iFV_5alloc5alloc18handle_alloc_error"
        ));
        assert!(is_anchor(
            b"_ZN5alloc5alloc18handle_alloc_error17h0123456789abcdefE"
        ));
        assert!(!is_anchor(
            b"_RNvNvNtCsx_5alloc5alloc18handle_alloc_error8rt_error"
        ));
        assert!(on_failure_path(
            b"_RNvNvNtCsx_5alloc5alloc18handle_alloc_error8rt_error"
        ));
        assert!(on_failure_path(
            b"_RNvCsfLfy6EI15iL_7___rustc26___rust_alloc_error_handler"
        ));
        assert!(on_failure_path(b"_RNvNtCsjrHSEGnQ3l9_3std5alloc8rust_oom"));
        assert!(!on_failure_path(b"_RNvNtCsx_5mycrate18handle_alloc_error"));
        assert!(!on_failure_path(
            b"_ZN3std7process5abort17h0123456789abcdefE"
        ));
    }
}
