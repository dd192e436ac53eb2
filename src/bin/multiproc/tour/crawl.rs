//! Experiment 8: a small crawl. The tour serves `PAGES` pages on 127.0.0.1 with an
//! artificial latency; workers fetch them and append each page's `<h1>` to a `Manager`
//! list: serially, on threads, on processes. Python's crawler fetches from the same server.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc::manager::List;
use multiproc::{Executor, Manager, ProcessPool, Result, ThreadPool};
use serde_json::{Value, json};

use super::report::three_ways;
use super::{Ctx, Experiment, timed};

const PAGES: usize = 50;
const WORKERS: usize = 10;

fn title(i: usize) -> String {
    format!("Page {i} of the tour")
}

/// A loopback HTTP/1.0 server: `/page/<i>` answers, after `latency`, with a page whose
/// `<h1>` is `title(i)`. Each connection gets its own thread, so concurrent fetches overlap
/// their latency as they would against a real site. Stops when dropped.
struct Site {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Site {
    fn start(latency: Duration) -> Result<Site> {
        let bind = |e| multiproc::Error::io("tour: bind the page server on 127.0.0.1", e);
        let listener = TcpListener::bind("127.0.0.1:0").map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    std::thread::spawn(move || answer(s, latency));
                }
            }
        });
        Ok(Site { addr, stop })
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(stream: TcpStream, latency: Duration) {
    // Read the whole request head: closing a socket with unread bytes sends a reset,
    // which can reach the client before the page does.
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim() != "" {
        header.clear();
    }
    let page = request_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix("/page/"))
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i < PAGES);
    std::thread::sleep(latency);
    let (status, body) = match page {
        Some(i) => (
            "200 OK",
            format!(
                "<html><head><title>tour</title></head><body><h1>{}</h1><p>...</p></body></html>",
                title(i)
            ),
        ),
        None => (
            "404 Not Found",
            "<html><body><p>no such page</p></body></html>".into(),
        ),
    };
    let _ = write!(
        &stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// GETs `url` (`http://host:port/path`) and returns the page's `<h1>`.
fn get_title(url: &str) -> std::result::Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// link")?;
    let (host, path) = rest.split_once('/').ok_or("no path in the link")?;
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut page = String::new();
    stream
        .read_to_string(&mut page)
        .map_err(|e| e.to_string())?;
    page.split_once("<h1>")
        .and_then(|(_, rest)| rest.split_once("</h1>"))
        .map(|(t, _)| t.to_string())
        .ok_or_else(|| format!("no <h1> at {url}"))
}

/// Fetches one page and appends its title to the shared list (in any worker).
fn fetch((titles, url): (List<String>, String)) -> bool {
    let t = get_title(&url).unwrap_or_else(|e| format!("(error: {e})"));
    titles.append(&t).is_ok()
}

fn crawl(
    manager: &Manager,
    kind: &str,
    links: &[String],
    run: impl FnOnce(Vec<(List<String>, String)>) -> Result<Vec<bool>>,
) -> Result<(f64, Value)> {
    let titles = manager.list::<String>(kind)?;
    let jobs: Vec<_> = links.iter().map(|l| (titles.clone(), l.clone())).collect();
    let (appended, wall) = timed(|| run(jobs))?;
    let got = titles.to_vec()?;
    let distinct: BTreeSet<&String> = got.iter().collect();
    let expected: BTreeSet<String> = (0..links.len()).map(title).collect();
    let all_right =
        distinct.len() == expected.len() && distinct.iter().all(|t| expected.contains(*t));
    Ok((
        wall.as_secs_f64(),
        json!({
            "titles": got.len(),
            "distinct_titles": distinct.len(),
            "all_titles_right": all_right,
            "all_appended": appended.iter().all(|&a| a),
        }),
    ))
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let latency = Duration::from_millis(if ctx.quick { 10 } else { 50 });
    let site = Site::start(latency)?;
    let links: Vec<String> = (0..PAGES)
        .map(|i| format!("{}/page/{i}", site.base()))
        .collect();
    let manager = Manager::start()?;

    ctx.step(format!("Rust: crawl {PAGES} pages serially"));
    let (serial_s, serial) = crawl(&manager, "serial", &links, |jobs| {
        Ok(jobs.into_iter().map(fetch).collect())
    })?;
    ctx.step(format!("Rust: crawl {PAGES} pages on {WORKERS} threads"));
    let threads = ThreadPool::new(WORKERS)?;
    let (threads_s, on_threads) =
        crawl(&manager, "threads", &links, |jobs| threads.map(fetch, jobs))?;
    drop(threads);
    ctx.step(format!("Rust: crawl {PAGES} pages on {WORKERS} processes"));
    let procs = ProcessPool::new(WORKERS)?;
    let (procs_s, on_procs) = crawl(&manager, "processes", &links, |jobs| procs.map(fetch, jobs))?;
    drop(procs);
    drop(manager);

    let rust = json!({
        "pages": PAGES, "workers": WORKERS, "latency_s": latency.as_secs_f64(),
        "serial_s": serial_s, "threads_s": threads_s, "processes_s": procs_s,
        "serial": serial, "threads": on_threads, "processes": on_procs,
    });
    let py = ctx.python(
        "crawl.py",
        &[site.base(), PAGES.to_string(), WORKERS.to_string()],
    );
    drop(site);
    let (rows, bars) = three_ways("crawl (HTTP)", &WORKERS.to_string(), &rust, &py);
    let ms = latency.as_millis();
    Ok(Experiment {
        id: 8,
        title: format!(
            "A small crawl: {PAGES} pages from a loopback server ({ms} ms each), titles into a \
             Manager list"
        ),
        lesson: format!(
            "fetching is waiting on the network, so {WORKERS} workers overlap their waits \
             (threads or processes, in both languages) and the Manager list gathers every \
             title from every worker."
        ),
        lines: vec![format!(
            "Rust: {} of {PAGES} titles gathered serially, {} on threads, {} on processes",
            rust["serial"]["distinct_titles"],
            rust["threads"]["distinct_titles"],
            rust["processes"]["distinct_titles"]
        )],
        rows,
        bars: Some(bars),
        rust,
        python: py,
    })
}
