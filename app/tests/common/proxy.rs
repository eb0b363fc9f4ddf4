//! A TCP proxy on `127.0.0.1:0` in front of a service, which a test switches off (every
//! connection, open or new, is closed at once) and on again, to make the service unreachable
//! for one process without stopping the server others share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    on: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards to `target` (`host:port`); starts switched on.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let (on, watch_on) = watch::channel(true);
        let refused = Arc::new(AtomicUsize::new(0));
        let (target, counter) = (target.to_owned(), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch_on.borrow() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let (target, mut switched) = (target.clone(), watch_on.clone());
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = switched.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        Proxy { port, on, refused, task }
    }

    /// Closes every open connection and refuses new ones until [`Proxy::switch_on`].
    pub fn switch_off(&self) {
        self.on.send_replace(false);
    }

    pub fn switch_on(&self) {
        self.on.send_replace(true);
    }

    /// Waits up to 30 s until `at_least` connections were refused; fails with `message` else.
    pub async fn wait_for_refused(&self, at_least: usize, message: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.refused() < at_least {
            assert!(std::time::Instant::now() < deadline, "{message}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Connections closed on arrival while switched off, so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
