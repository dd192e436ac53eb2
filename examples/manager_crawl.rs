//! The crawler of Python's Manager tutorials, in Rust:
//!
//! ```python
//! with Manager() as manager:
//!     result_list = manager.list()
//!     with Pool() as pool:
//!         pool.starmap(fetch, [(result_list, link) for link in links])
//!     print(list(result_list))
//! ```
//!
//! A small HTTP server on 127.0.0.1 (a thread of this example) serves a few pages with
//! `<h1>` titles; a process pool fetches them and appends each title to a list served by
//! a manager. Run: `cargo run --example manager_crawl`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use multiproc::manager::List;
use multiproc::{Executor, Manager, ProcessPool};

const PAGES: [(&str, &str); 5] = [
    ("/", "Home"),
    ("/about", "About us"),
    ("/blog", "The blog"),
    ("/blog/managers", "Sharing state with a Manager"),
    ("/contact", "Contact"),
];

/// Serves `PAGES` over HTTP/1.0, one connection at a time, forever (a daemon thread).
fn serve_pages(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let (status, body) = match PAGES.iter().find(|(p, _)| *p == path) {
            Some((_, title)) => (
                "200 OK",
                format!("<html><body><h1>{title}</h1><p>...</p></body></html>"),
            ),
            None => ("404 Not Found", "<h1>Not found</h1>".to_string()),
        };
        let _ = write!(
            &stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Fetches `link` and appends its `<h1>` title to the shared list (runs in a worker).
fn fetch(result_list: List<String>, link: String) {
    let (host, path) = link
        .strip_prefix("http://")
        .and_then(|rest| {
            rest.split_once('/')
                .map(|(h, p)| (h.to_string(), format!("/{p}")))
        })
        .expect("an http:// link");
    let mut stream = TcpStream::connect(&host).expect("connect to the page server");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    let title = page
        .split_once("<h1>")
        .and_then(|(_, rest)| rest.split_once("</h1>"))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| format!("(no title at {link})"));
    result_list.append(&title).unwrap();
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let site = listener.local_addr().unwrap();
    std::thread::spawn(move || serve_pages(listener));
    let links: Vec<String> = PAGES
        .iter()
        .map(|(p, _)| format!("http://{site}{p}"))
        .collect();

    let manager = Manager::start()?;
    let result_list = manager.list::<String>("results")?;
    let pool = ProcessPool::new(4)?;
    pool.starmap(
        fetch,
        links.iter().map(|l| (result_list.clone(), l.clone())),
    )?;

    let mut titles = result_list.to_vec()?;
    titles.sort();
    for t in &titles {
        println!("{t}");
    }
    assert_eq!(titles.len(), PAGES.len());
    Ok(())
}
