//! Personal data kept out (docs/event-path.md, "What is kept of a webhook"): whatever phones,
//! e-mails, names and addresses a webhook carries, in its comments, in fields we do not know or
//! in values it gets refused for, none of them reaches the bus, the state database or the log;
//! the click ids found in the comments are kept.

mod common;

use common::http::{Processed, client, post_webhook, wait_until_processed};
use common::server::Instance;
use common::status_change;
use serde_json::{Value, json};

/// Each spelled as a customer would type it; `NEEDLES` is what must be found nowhere.
const CONTACTS: &str = "Іван Петренко, тел. +380 (50) 123-45-67, 067 765 43 21, ivan.petrenko@mail.example.com; \
                        Київ, вул. Хрещатик 1, кв. 5";
const NEEDLES: [&str; 9] =
    ["380501234567", "123-45-67", "765 43 21", "0677654321", "petrenko@", "mail.example.com", "Петренко", "Хрещатик", "olena@shop.example"];

fn personal_webhook(order_id: i64) -> String {
    let mut body: Value = serde_json::from_str(&status_change(order_id, 1, 1, "2026-03-02T09:00:00.000000Z")).unwrap();
    let context = &mut body["context"];
    context["manager_comment"] = json!(format!("{CONTACTS} https://shop.example/p?fbclid=IwAR0click_{order_id}"));
    context["client_comment"] = json!(CONTACTS);
    context["gift_message"] = json!("Для Олени: olena@shop.example");
    context["buyer"] = json!({"full_name": "Іван Петренко", "phone": "+380501234567", "email": "ivan.petrenko@mail.example.com"});
    context["shipping"] = json!({"address": "вул. Хрещатик 1", "recipient_phone": "0677654321"});
    context["notes_from_a_new_keycrm_version"] = json!(CONTACTS);
    body.to_string()
}

/// Every file under `dir` (databases, their WAL files, facts), as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_emails_and_comments_reach_neither_the_databases_nor_the_log() {
    let instance = Instance::sqlite().with_env("KSA__LOG__LEVEL", "debug");
    let project = instance.add_project("shop", &[]);
    let server = instance.start();
    let client = client();
    let url = server.webhook_url(&project);
    for order_id in [501, 502] {
        post_webhook(&client, &url, personal_webhook(order_id)).await.assert_accepted_as("accepted");
    }
    // Refused for values that are contacts: the refusal quotes them back to the sender, and
    // logs its message, masked.
    let mut hostile: Value = serde_json::from_str(&personal_webhook(503)).unwrap();
    hostile["context"]["status_id"] = json!("+380 (50) 123-45-67");
    post_webhook(&client, &url, hostile.to_string()).await.assert_error(400);
    hostile["context"]["status_id"] = json!(1);
    hostile["context"]["status_changed_at"] = json!("olena@shop.example");
    post_webhook(&client, &url, hostile.to_string()).await.assert_error(400);
    wait_until_processed(&client, &server, "shop", Processed { orders: 2, events: 2 }).await;
    let log = server.stderr();
    server.stop();

    assert!(log.contains("webhook refused"), "the refusals were logged at debug:\n{log}");
    assert!(log.contains("[phone]") && log.contains("[email]"), "the refusals' values were masked in the log:\n{log}");
    for needle in NEEDLES {
        assert!(!log.contains(needle), "the log holds {needle:?}:\n{log}");
    }
    let stored = files(instance.data_dir());
    assert!(stored.iter().any(|(_, bytes)| contains(bytes, "IwAR0click_501")), "the click id is kept");
    for (path, bytes) in &stored {
        for needle in NEEDLES.iter().chain(&["manager_comment", "gift_message", "recipient_phone"]) {
            assert!(!contains(bytes, needle), "{} holds {needle:?}", path.display());
        }
    }
}
