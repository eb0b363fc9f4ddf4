//! A ClickHouse database of one test, dropped when the test ends.

/// Drops a ClickHouse database when the test ends, even by a panic.
pub struct ScratchClickHouse {
    pub url: String,
    pub database: String,
}

impl Drop for ScratchClickHouse {
    fn drop(&mut self) {
        let (url, sql) = (self.url.clone(), format!("DROP DATABASE IF EXISTS {}", self.database));
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime");
            runtime.block_on(async { reqwest::Client::new().post(&url).body(sql).send().await.map(|_| ()) })
        })
        .join();
    }
}
