//! Login throttling: after [`PAIR_LIMIT`] failed logins of one login from one address within
//! [`PAIR_WINDOW`], that pair is refused until the oldest of them leaves the window; a looser
//! cap per address ([`ADDRESS_LIMIT`] an [`ADDRESS_WINDOW`]) stops guessing across logins without
//! letting anyone lock an account from elsewhere. Failures are kept in the state database, so
//! every query-API process counts the same ones.

use ksa_schemas::Timestamp;
use ksa_state::AdminStore;

use crate::error::ApiError;

pub const PAIR_LIMIT: usize = 5;
pub const PAIR_WINDOW: i64 = 15 * 60 * 1_000_000;
pub const ADDRESS_LIMIT: usize = 50;
pub const ADDRESS_WINDOW: i64 = 3600 * 1_000_000;

/// Seconds until the pair may try again, if it must wait.
pub fn wait(pair: &[Timestamp], address: &[Timestamp], now: Timestamp) -> Option<u64> {
    let until = |failures: &[Timestamp], limit: usize, window: i64| {
        (failures.len() >= limit).then(|| failures[failures.len() - limit].as_micros() + window - now.as_micros())
    };
    let micros = [until(pair, PAIR_LIMIT, PAIR_WINDOW), until(address, ADDRESS_LIMIT, ADDRESS_WINDOW)].into_iter().flatten().max()?;
    (micros > 0).then(|| (micros as u64).div_ceil(1_000_000))
}

/// 429 when `login` from `address` must wait.
pub async fn check<S: AdminStore>(state: &S, login: &str, address: &str, now: Timestamp) -> Result<(), ApiError> {
    let failures = state
        .login_failures(
            login,
            address,
            Timestamp::from_micros(now.as_micros() - PAIR_WINDOW),
            Timestamp::from_micros(now.as_micros() - ADDRESS_WINDOW),
        )
        .await?;
    match wait(&failures.pair, &failures.address, now) {
        Some(seconds) => Err(ApiError::too_many(seconds, format!("too many failed logins; try again in {}", in_words(seconds)))),
        None => Ok(()),
    }
}

fn in_words(seconds: u64) -> String {
    if seconds < 60 { format!("{seconds} s") } else { format!("{} min", seconds.div_ceil(60)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000 + minutes * MINUTE)
    }

    #[test]
    fn the_fifth_failure_locks_the_pair_until_the_first_leaves_the_window() {
        let four: Vec<_> = (0..4).map(at).collect();
        assert_eq!(wait(&four, &four, at(5)), None);
        let five: Vec<_> = (0..5).map(at).collect();
        // The first failure (minute 0) leaves the 15-minute window at minute 15.
        assert_eq!(wait(&five, &five, at(5)), Some(10 * 60));
        assert_eq!(wait(&five, &five, at(15)), None);
    }

    #[test]
    fn an_address_is_capped_across_logins() {
        let many: Vec<_> = (0..50).map(|i| Timestamp::from_micros(at(0).as_micros() + i * 1_000_000)).collect();
        assert_eq!(wait(&[], &many, at(30)), Some(30 * 60));
        assert_eq!(wait(&[], &many[1..], at(30)), None);
    }
}
