//! The latency histogram of webhooks (`webhook_latency`): 32 log-scale buckets, so an hour of a
//! project is at most 32 small rows however many webhooks it had.
//!
//! Bucket 0 holds answers of up to 0.1 ms; bucket `i` (1 to 30) those over the bound of `i − 1`
//! up to 0.1 ms × 10^(i/6), six buckets a decade, so bucket 30 ends at 10 s; bucket 31 holds
//! everything longer. A quantile is reported as the upper bound of the bucket it falls in: it is
//! exact to within one bucket, that is at most 10^(1/6) ≈ 1.47 times the true value.

/// Buckets of the histogram.
pub const BUCKETS: usize = 32;

/// The last bucket: over 10 s.
pub const OVERFLOW: u8 = (BUCKETS - 1) as u8;

/// Microseconds of bucket 0's upper bound.
const FIRST_UPPER_MICROS: f64 = 100.0;

/// Buckets per tenfold.
const PER_DECADE: f64 = 6.0;

/// Counts per bucket.
pub type Histogram = [i64; BUCKETS];

/// The upper bound of a bucket in microseconds (`i64::MAX` for [`OVERFLOW`]).
pub fn upper_micros(bucket: u8) -> i64 {
    if bucket >= OVERFLOW {
        return i64::MAX;
    }
    (FIRST_UPPER_MICROS * 10f64.powf(f64::from(bucket) / PER_DECADE)).round() as i64
}

/// The bucket of a latency in microseconds.
pub fn bucket_of(micros: i64) -> u8 {
    if micros <= upper_micros(0) {
        return 0;
    }
    let guess = (PER_DECADE * (micros as f64 / FIRST_UPPER_MICROS).log10()).ceil();
    let mut bucket = guess.clamp(1.0, f64::from(OVERFLOW)) as u8;
    // The bounds are rounded to whole microseconds: settle on the first bucket that holds it.
    while bucket > 1 && micros <= upper_micros(bucket - 1) {
        bucket -= 1;
    }
    while bucket < OVERFLOW && micros > upper_micros(bucket) {
        bucket += 1;
    }
    bucket
}

/// The bucket the `q` quantile (0 < q ≤ 1) of the histogram falls in; `None` when it is empty.
pub fn quantile(histogram: &Histogram, q: f64) -> Option<u8> {
    let total: i64 = histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    // The rank of the quantile among the sorted latencies, 1-based (the nearest-rank method).
    let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
    let mut seen = 0;
    for (bucket, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket as u8);
        }
    }
    Some(OVERFLOW)
}

/// A bucket as answers report it: its upper bound in milliseconds, to the microsecond; the
/// overflow bucket reports 10 s (it means "10 s or more").
pub fn reported_ms(bucket: u8) -> f64 {
    upper_micros(bucket.min(OVERFLOW - 1)) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_six_to_a_decade_from_a_tenth_of_a_millisecond_to_ten_seconds() {
        assert_eq!(upper_micros(0), 100);
        assert_eq!(upper_micros(6), 1_000);
        assert_eq!(upper_micros(12), 10_000);
        assert_eq!(upper_micros(30), 10_000_000);
        assert_eq!(upper_micros(OVERFLOW), i64::MAX);
        for bucket in 1..OVERFLOW {
            assert!(upper_micros(bucket) > upper_micros(bucket - 1));
        }
    }

    #[test]
    fn every_latency_falls_in_the_first_bucket_whose_bound_holds_it() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(-5), 0, "a clock step back counts as no time");
        assert_eq!(bucket_of(100), 0);
        assert_eq!(bucket_of(101), 1);
        assert_eq!(bucket_of(1_000), 6);
        assert_eq!(bucket_of(1_001), 7);
        assert_eq!(bucket_of(10_000_000), 30);
        assert_eq!(bucket_of(10_000_001), OVERFLOW);
        assert_eq!(bucket_of(i64::MAX), OVERFLOW);
        for micros in (1..2_000_000).step_by(997) {
            let bucket = bucket_of(micros);
            assert!(micros <= upper_micros(bucket), "{micros} µs over the bound of bucket {bucket}");
            assert!(bucket == 0 || micros > upper_micros(bucket - 1), "{micros} µs belongs below bucket {bucket}");
        }
    }

    #[test]
    fn quantiles_are_the_buckets_of_the_nearest_rank() {
        let mut histogram = [0; BUCKETS];
        assert_eq!(quantile(&histogram, 0.5), None);
        histogram[3] = 98;
        histogram[20] = 2;
        assert_eq!(quantile(&histogram, 0.5), Some(3));
        assert_eq!(quantile(&histogram, 0.98), Some(3));
        assert_eq!(quantile(&histogram, 0.99), Some(20));
        assert_eq!(quantile(&histogram, 1.0), Some(20));
        assert_eq!(reported_ms(6), 1.0);
        assert_eq!(reported_ms(OVERFLOW), 10_000.0);
    }
}
