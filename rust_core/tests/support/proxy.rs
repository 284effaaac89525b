//! A TCP proxy in front of Redis that loses replies on purpose: it forwards a client request
//! containing a marker to Redis (which applies it), drops the reply and cuts the connection,
//! exactly as a network failure after the write would.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The proxy; it runs until the test process ends.
pub struct CuttingProxy {
    pub port: u16,
    marked: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    armed: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Forwards to `127.0.0.1:target`; every `every`-th request containing `marker` reaches
    /// Redis but its connection is cut before any reply comes back.
    pub fn start(target: u16, marker: &'static [u8], every: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (marked, cuts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let armed = Arc::new(AtomicBool::new(true));
        let shared = (marked.clone(), cuts.clone(), armed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let (marked, cuts, armed) = (shared.0.clone(), shared.1.clone(), shared.2.clone());
                std::thread::spawn(move || relay(client, server, marker, every, &marked, &cuts, &armed));
            }
        });
        CuttingProxy { port, marked, cuts, armed }
    }

    /// Starts (true, the state it starts in) or stops cutting; requests pass untouched while
    /// it is disarmed.
    pub fn arm(&self, armed: bool) {
        self.armed.store(armed, Ordering::SeqCst);
    }

    /// `redis://127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::Relaxed)
    }
}

fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    marker: &[u8],
    every: usize,
    marked: &AtomicUsize,
    cuts: &AtomicUsize,
    armed: &AtomicBool,
) {
    let cut = Arc::new(AtomicBool::new(false));
    let (mut replies_from, mut replies_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    let dropping = cut.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = replies_from.read(&mut buf) {
            if dropping.load(Ordering::SeqCst) || replies_to.write_all(&buf[..n]).is_err() {
                return;
            }
        }
        let _ = replies_to.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = client.read(&mut buf) {
        let request = &buf[..n];
        let lose = armed.load(Ordering::SeqCst)
            && request.windows(marker.len()).any(|w| w == marker)
            && marked.fetch_add(1, Ordering::Relaxed) % every == every - 1;
        if lose {
            cut.store(true, Ordering::SeqCst);
        }
        if server.write_all(request).is_err() {
            break;
        }
        if lose {
            // Redis gets the time to apply it; its reply is dropped.
            std::thread::sleep(Duration::from_millis(20));
            cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
