//! The build id: what tells two executables apart, checked in the worker handshake.
//!
//! We read the GNU build-id note the linker writes into the program headers of
//! `/proc/self/exe`. Where there is none, we fall back to the file's identity (device,
//! inode, size, modification time), which changes whenever the file is rebuilt.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// This program's build id as a hex string (computed once).
pub(crate) fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| compute("/proc/self/exe"))
}

/// The build id of an executable file.
pub(crate) fn compute(path: &str) -> String {
    if let Some(id) = gnu_build_id(path) {
        return id;
    }
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "file-{:x}-{:x}-{:x}-{:x}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime_nsec() ^ m.mtime()
        ),
        Err(_) => "unknown".into(),
    }
}

fn gnu_build_id(path: &str) -> Option<String> {
    let mut head = vec![0u8; 64 * 1024];
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    head.truncate(n);
    let h = &head;
    if h.len() < 64 || &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None; // only 64-bit little-endian ELF
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(h.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(h.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(h.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let (off, size) = (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize);
        let mut p = off;
        while p + 12 <= (off + size).min(h.len()) {
            let (namesz, descsz, ty) =
                (u32_at(p)? as usize, u32_at(p + 4)? as usize, u32_at(p + 8)?);
            let name = p + 12;
            let desc = name + namesz.div_ceil(4) * 4;
            if ty == 3 && h.get(name..name + namesz)? == b"GNU\0" {
                let id = h.get(desc..desc + descsz)?;
                return Some(id.iter().map(|b| format!("{b:02x}")).collect());
            }
            p = desc + descsz.div_ceil(4) * 4;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_id_is_stable_and_differs_between_binaries() {
        let me = super::build_id();
        assert_eq!(me, super::compute("/proc/self/exe"));
        assert_ne!(me, super::compute("/bin/sh"));
        assert!(!me.is_empty() && me != "unknown");
    }
}
