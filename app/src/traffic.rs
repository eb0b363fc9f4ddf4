//! Deterministic KeyCRM-like webhook traffic for one project: typical paths through the six
//! status groups with rework loops, cancellations and reopenings, delivered mostly in time
//! order with a share of duplicates and of late (out-of-order) deliveries.

use ksa_schemas::Timestamp;

/// What to generate. The same spec and seed always give the same bytes.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    pub orders: u64,
    /// Orders are created uniformly over `days` days from `start`.
    pub start: Timestamp,
    pub days: u32,
    pub seed: u64,
    /// Share of deliveries repeated (KeyCRM retries).
    pub duplicate_share: f64,
    /// Share of deliveries that arrive after later events.
    pub late_share: f64,
    /// Which simulated account this is: its status ids and order ids differ from the others'.
    pub project_index: u32,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            orders: 1000,
            // 2026-01-01T00:00:00Z
            start: Timestamp::from_seconds(1_767_225_600),
            days: 120,
            seed: 7,
            duplicate_share: 0.05,
            late_share: 0.05,
            project_index: 0,
        }
    }
}

/// A small, fast, seedable generator (xorshift64*); good enough for traffic shapes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }
}

/// One status change of the generated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratedEvent {
    pub order_id: i64,
    pub status_id: i64,
    pub group_id: u16,
    pub changed_at: Timestamp,
    pub created_at: Timestamp,
}

const MINUTE: i64 = 60_000_000;

/// `(status, group)` pairs of the generated project.
const NEW: (i64, u16) = (1, 1);
const AGREEMENT: [(i64, u16); 2] = [(20, 2), (21, 2)];
const PRODUCTION: [(i64, u16); 2] = [(7, 3), (8, 3)];
const DELIVERY: (i64, u16) = (11, 4);
const COMPLETED: (i64, u16) = (12, 5);
const CANCELED: (i64, u16) = (19, 6);

/// The status path of one order.
fn order_path(rng: &mut Rng) -> Vec<(i64, u16)> {
    let mut path = vec![NEW, AGREEMENT[0]];
    if rng.chance(0.5) {
        path.push(AGREEMENT[1]);
    }
    if rng.chance(0.06) {
        path.push(CANCELED);
        return path;
    }
    path.extend(PRODUCTION);
    if rng.chance(0.12) {
        // Rework: back to agreement, then production again.
        path.push(AGREEMENT[0]);
        path.extend(PRODUCTION);
    }
    if rng.chance(0.03) {
        path.push(CANCELED);
        return path;
    }
    path.push(DELIVERY);
    path.push(COMPLETED);
    if rng.chance(0.03) {
        // Reopened after completion.
        path.push(PRODUCTION[1]);
        path.push(DELIVERY);
        path.push(COMPLETED);
    }
    path
}

/// Every status change, in the order KeyCRM would send them (by time), before delivery noise.
pub fn status_changes(spec: &TrafficSpec) -> Vec<GeneratedEvent> {
    let mut rng = Rng::new(spec.seed ^ (u64::from(spec.project_index) << 32));
    let span = i64::from(spec.days) * 24 * 60;
    let mut events = Vec::with_capacity(spec.orders as usize * 8);
    for n in 0..spec.orders {
        let order_id = 10_000 + i64::from(spec.project_index) * 10_000_000 + n as i64;
        let status_base = i64::from(spec.project_index) * 100;
        let created_at = Timestamp::from_micros(spec.start.as_micros() + rng.below(span as u64) as i64 * MINUTE);
        let mut at = created_at.as_micros() + rng.below(120) as i64 * MINUTE;
        for (status_id, group_id) in order_path(&mut rng) {
            let status_id = status_base + status_id;
            events.push(GeneratedEvent { order_id, status_id, group_id, changed_at: Timestamp::from_micros(at), created_at });
            // 10 minutes to about two days per status, skewed short.
            let minutes = 10 + rng.below(60) * rng.below(48);
            at += minutes as i64 * MINUTE;
        }
    }
    events.sort_by_key(|e| (e.changed_at, e.order_id));
    events
}

/// The delivered sequence: time order with late deliveries moved back and duplicates added.
pub fn deliveries(spec: &TrafficSpec) -> Vec<GeneratedEvent> {
    let mut rng = Rng::new(spec.seed ^ 0xD1B5_4A32_D192_ED03);
    let events = status_changes(spec);
    let mut out = Vec::with_capacity(events.len() + events.len() / 10);
    let mut held: Vec<(usize, GeneratedEvent)> = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        if rng.chance(spec.late_share) {
            held.push((i + 1 + rng.below(200) as usize, event));
        } else {
            out.push(event);
        }
        if rng.chance(spec.duplicate_share) {
            held.push((i + rng.below(50) as usize, event));
        }
        held.retain(|(due, late)| {
            if *due <= i {
                out.push(*late);
                false
            } else {
                true
            }
        });
    }
    held.sort_by_key(|(due, _)| *due);
    out.extend(held.into_iter().map(|(_, e)| e));
    out
}

/// A webhook body as KeyCRM posts it for `event` (one line, no trailing newline).
pub fn webhook_body(event: &GeneratedEvent, out: &mut String) {
    use std::fmt::Write;
    let changed = event.changed_at.to_rfc3339_micros();
    let created = event.created_at.to_rfc3339_micros();
    let closed =
        if event.group_id >= 5 { format!("\"{}\"", event.changed_at.to_datetime().format("%Y-%m-%d %H:%M:%S")) } else { "null".into() };
    let total = 200 + (event.order_id % 37) * 45;
    let _ = write!(
        out,
        r#"{{"event":"order.change_order_status","context":{{"id":{id},"parent_id":null,"source_uuid":"№{id}","global_source_uuid":"58210{id}","status_on_source":"new","source_id":3,"client_id":{client},"manager_id":6,"grand_total":{total},"total_discount":0,"margin_sum":{total},"expenses_sum":0,"discount_amount":null,"discount_percent":null,"shipping_price":"0.00","taxes":null,"register_id":null,"fiscal_result":[],"fiscal_status":null,"shipping_type_id":null,"status_group_id":{group},"status_id":{status},"closed_from":null,"status_changed_at":"{changed}","status_expired_at":null,"manager_comment":"Доставка: Нова Пошта, відділення 12. Тел. +380500000000","client_comment":null,"discount_data":[],"is_gift":false,"promocode":null,"wrap_price":null,"gift_wrap":false,"payment_status":"not_paid","gift_message":null,"last_synced_at":null,"created_at":"{created}","updated_at":"{changed}","closed_at":{closed},"deleted_at":null,"ordered_at":"{created}","source_updated_at":null,"payments_total":0,"products_total":{total},"is_expired":false,"has_reserves":false}}}}"#,
        id = event.order_id,
        client = 20_000 + event.order_id % 5000,
        group = event.group_id,
        status = event.status_id,
    );
}

trait Rfc3339Micros {
    fn to_rfc3339_micros(self) -> String;
}

impl Rfc3339Micros for Timestamp {
    /// KeyCRM's own shape: `2026-01-29T18:53:35.000000Z`.
    fn to_rfc3339_micros(self) -> String {
        self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_traffic() {
        let spec = TrafficSpec { orders: 200, ..TrafficSpec::default() };
        assert_eq!(deliveries(&spec), deliveries(&spec));
    }

    #[test]
    fn traffic_has_duplicates_late_deliveries_and_every_group() {
        let spec = TrafficSpec { orders: 2000, ..TrafficSpec::default() };
        let changes = status_changes(&spec);
        let delivered = deliveries(&spec);
        let extra = delivered.len() - changes.len();
        assert!(extra * 100 >= changes.len() * 4, "about 5 % duplicates, got {extra} of {}", changes.len());
        let late = delivered.windows(2).filter(|w| w[1].changed_at < w[0].changed_at).count();
        assert!(late * 100 >= changes.len() * 4, "about 5 % late, got {late}");
        for group in 1..=6 {
            assert!(changes.iter().any(|e| e.group_id == group), "group {group}");
        }
    }

    #[test]
    fn bodies_parse_as_status_events() {
        let spec = TrafficSpec { orders: 50, ..TrafficSpec::default() };
        let mut body = String::new();
        for event in deliveries(&spec) {
            body.clear();
            webhook_body(&event, &mut body);
            match ksa_schemas::parse_webhook(body.as_bytes()).unwrap() {
                ksa_schemas::WebhookOutcome::Status(parsed) => {
                    assert_eq!((parsed.order_id, parsed.status_id, parsed.group_id), (event.order_id, event.status_id, event.group_id));
                    assert_eq!(parsed.changed_at, event.changed_at);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

/// Whether a generated order carries the urgent-production item (about one in ten).
pub fn is_urgent(order_id: i64, seed: u64) -> bool {
    Rng::new(seed ^ order_id as u64).below(10) == 0
}

/// `GET /order/{id}?include=products.offer,marketing` for a generated order: a regular item,
/// and for urgent orders the "Термінове виготовлення" line (offer 16, product 2).
pub fn order_body(order_id: i64, urgent: bool, out: &mut String) {
    use std::fmt::Write;
    let sku = format!("KUF{:03}", order_id % 1000);
    let _ = write!(
        out,
        r#"{{"id":{order_id},"source_id":3,"status_id":20,"discount_data":[],"products":[{{"id":{line},"sku":"{sku}","name":"Футболка","price":599,"price_sold":"599.00","quantity":1.0,"picture":[],"offer":{{"id":{offer},"product_id":{product},"sku":"{sku}"}}}}"#,
        line = order_id * 10,
        offer = 9000 + order_id % 500,
        product = 1000 + order_id % 50,
    );
    if urgent {
        let _ = write!(
            out,
            r#",{{"id":{line},"sku":"Термінове виготовлення","name":"Термінове виготовлення","price":0,"price_sold":0,"quantity":1,"picture":{{"thumbnail":"https://example.invalid/t.webp"}},"offer":{{"id":16,"product_id":2,"sku":"Термінове виготовлення"}}}}"#,
            line = order_id * 10 + 1
        );
    }
    let _ = write!(
        out,
        r#"],"marketing":{{"utm_source":"instagram","utm_medium":"cpc","utm_campaign":"sim","utm_term":null,"utm_content":null}}}}"#
    );
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn generated_orders_parse_and_about_one_in_ten_is_urgent() {
        let urgent = (0..1000).filter(|id| is_urgent(*id, 7)).count();
        assert!((50..=150).contains(&urgent), "{urgent}");
        for (id, flag) in [(5, false), (6, true)] {
            let mut body = String::new();
            order_body(id, flag, &mut body);
            let order = ksa_schemas::parse_order_details(body.as_bytes()).unwrap();
            assert_eq!(order.lines.len(), if flag { 2 } else { 1 });
            assert_eq!(order.lines.iter().any(|l| l.offer_id == Some(16)), flag);
        }
    }
}
