//! CPython's `multiprocessing.connection` challenge–response handshake (see `README.md`).
//!
//! The challenger sends `#CHALLENGE#{sha256}` + 40 random bytes; the answerer replies with
//! `{sha256}` + HMAC-SHA256(key, everything after `#CHALLENGE#`). A Python 3.11 peer
//! answers instead with the bare 16-byte HMAC-MD5 of the same bytes, which we accept too.
//! When we answer, a bare 20-byte challenge (Python ≤ 3.11) gets a bare HMAC-MD5, a
//! `{digest}`-tagged one gets `{digest}` + HMAC-digest. The challenger then sends
//! `#WELCOME#` or `#FAILURE#`. Both directions run, listener first.

use std::time::Instant;

use hmac::{KeyInit, Mac};

use super::connection::Connection;
use crate::error::{Error, Result};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge we send (CPython 3.12's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// Handshake messages longer than this are refused (CPython uses the same bound).
const MAX_HANDSHAKE: usize = 256;

fn mac(digest: &str, key: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    Some(match digest {
        "md5" => run::<hmac::Hmac<md5::Md5>>(key, msg),
        "sha256" => run::<hmac::Hmac<sha2::Sha256>>(key, msg),
        "sha384" => run::<hmac::Hmac<sha2::Sha384>>(key, msg),
        _ => return None,
    })
}

/// Whether `got` is the HMAC of `msg` under `key`, compared in constant time by the hmac
/// crate's `verify_slice` (a hand-written fold may be turned into an early exit by the
/// optimizer; `verify_slice` uses `subtle`, built to prevent that).
fn mac_matches(digest: &str, key: &[u8], msg: &[u8], got: &[u8]) -> bool {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8], got: &[u8]) -> bool {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(msg);
        m.verify_slice(got).is_ok()
    }
    match digest {
        "md5" => run::<hmac::Hmac<md5::Md5>>(key, msg, got),
        "sha256" => run::<hmac::Hmac<sha2::Sha256>>(key, msg, got),
        "sha384" => run::<hmac::Hmac<sha2::Sha384>>(key, msg, got),
        _ => false,
    }
}

/// Splits `{digest}payload`; a 16- or 20-byte message is the legacy (MD5, untagged) form.
fn digest_and_payload(msg: &[u8]) -> Option<(&str, &[u8])> {
    if msg.len() == 16 || msg.len() == 20 {
        return Some(("", msg));
    }
    if msg.first() == Some(&b'{') {
        let close = msg.iter().take(22).position(|&b| b == b'}')?;
        let name = std::str::from_utf8(&msg[1..close]).ok()?;
        if ["md5", "sha256", "sha384"].contains(&name) {
            return Some((name, &msg[close + 1..]));
        }
    }
    None
}

fn recv_small(c: &Connection, deadline: Instant) -> Result<Vec<u8>> {
    let old = c.max_message_size();
    c.set_max_message_size(MAX_HANDSHAKE);
    let r = c.recv_bytes_timeout(deadline.saturating_duration_since(Instant::now()));
    c.set_max_message_size(old);
    match r {
        Err(Error::Timeout(_)) => Err(Error::AuthenticationFailed(
            "the peer did not complete the handshake in time".into(),
        )),
        Err(Error::Protocol(m)) => Err(Error::AuthenticationFailed(format!(
            "invalid handshake message: {m}"
        ))),
        r => r,
    }
}

fn send_small(c: &Connection, msg: &[u8], deadline: Instant) -> Result<()> {
    c.send_bytes_timeout(msg, deadline.saturating_duration_since(Instant::now()))
        .map_err(|e| match e {
            Error::Timeout(_) => Error::AuthenticationFailed(
                "the peer did not complete the handshake in time".into(),
            ),
            e => e,
        })
}

/// Challenges the peer to prove it knows `key` (CPython's `deliver_challenge`).
pub(crate) fn deliver_challenge(c: &Connection, key: &[u8], deadline: Instant) -> Result<()> {
    let mut random = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut random).map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    send_small(c, &challenge, deadline)?;
    let response = recv_small(c, deadline)?;
    let ok = match digest_and_payload(&response) {
        Some((name, got)) => {
            let name = if name.is_empty() { "md5" } else { name };
            mac_matches(name, key, &message, got)
        }
        None => false,
    };
    if ok {
        send_small(c, WELCOME, deadline)
    } else {
        let _ = send_small(c, FAILURE, deadline);
        Err(Error::AuthenticationFailed(
            "the digest received was wrong".into(),
        ))
    }
}

/// Answers the peer's challenge (CPython's `answer_challenge`).
pub(crate) fn answer_challenge(c: &Connection, key: &[u8], deadline: Instant) -> Result<()> {
    let msg = recv_small(c, deadline)?;
    let Some(message) = msg.strip_prefix(CHALLENGE) else {
        return Err(Error::AuthenticationFailed(
            "protocol error: expected a #CHALLENGE# message".into(),
        ));
    };
    if message.len() < 20 {
        return Err(Error::AuthenticationFailed("challenge too short".into()));
    }
    let reply = match digest_and_payload(message) {
        // A legacy (Python <= 3.11) challenge: a bare HMAC-MD5.
        Some(("", _)) => mac("md5", key, message).expect("md5 is supported"),
        Some((name, _)) => {
            let mut r = format!("{{{name}}}").into_bytes();
            r.extend(mac(name, key, message).expect("listed digests are supported"));
            r
        }
        None => {
            return Err(Error::AuthenticationFailed(
                "the challenge has an unsupported length or digest".into(),
            ));
        }
    };
    send_small(c, &reply, deadline)?;
    let answer = recv_small(c, deadline)?;
    if answer == WELCOME {
        Ok(())
    } else {
        Err(Error::AuthenticationFailed(
            "the peer rejected our digest".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digest_prefixes() {
        assert_eq!(
            digest_and_payload(b"{sha256}abc"),
            Some(("sha256", &b"abc"[..]))
        );
        assert_eq!(digest_and_payload(&[7; 16]).map(|x| x.0), Some(""));
        assert_eq!(digest_and_payload(b"{sha1}abcdefghijklmnopqrstu"), None);
        assert_eq!(digest_and_payload(b"no prefix and long enough"), None);
        // RFC 2104 test vector 2 for HMAC-MD5.
        let m = mac("md5", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            m,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
    }

    #[test]
    fn a_digest_is_accepted_only_whole_and_exact() {
        let want = mac("sha256", b"key", b"msg").unwrap();
        assert!(mac_matches("sha256", b"key", b"msg", &want));
        for i in [0, want.len() - 1] {
            let mut bad = want.clone();
            bad[i] ^= 1;
            assert!(
                !mac_matches("sha256", b"key", b"msg", &bad),
                "byte {i} flipped"
            );
        }
        // A prefix (a truncated MAC) and an empty one prove nothing.
        assert!(!mac_matches("sha256", b"key", b"msg", &want[..16]));
        assert!(!mac_matches("sha256", b"key", b"msg", &[]));
        assert!(!mac_matches("sha256", b"other", b"msg", &want));
        assert!(!mac_matches("sha1", b"key", b"msg", &want));
    }
}
