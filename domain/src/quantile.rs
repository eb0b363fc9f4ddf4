//! The one quantile rule of the dashboard's KPIs and of analytics: the nearest rank. The
//! q-quantile of n values is the value at 1-based rank ⌈q·n⌉ of the values sorted ascending
//! (the median of an even count is the lower middle one); there is none of no values. It is
//! computed in integers, so p90 of 10 values is the 9th whatever floating point would say.

/// The 1-based rank of the `percent` quantile among `n` values (`n` > 0).
pub fn rank(n: usize, percent: u32) -> usize {
    (n.saturating_mul(percent as usize)).div_ceil(100).clamp(1, n.max(1))
}

/// The `percent` quantile of `sorted` (ascending), by [`rank`].
pub fn nearest_rank<T: Copy>(sorted: &[T], percent: u32) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[rank(sorted.len(), percent) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_rank_is_the_ceiling_of_q_n() {
        let values = [10, 20, 30, 40];
        assert_eq!(nearest_rank(&values, 50), Some(20), "the lower middle of an even count");
        assert_eq!(nearest_rank(&values, 90), Some(40));
        assert_eq!(nearest_rank(&values, 25), Some(10));
        assert_eq!(nearest_rank(&values[..1], 95), Some(10));
        assert_eq!(nearest_rank::<i64>(&[], 50), None);
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!((nearest_rank(&hundred, 90), nearest_rank(&hundred, 95)), (Some(90), Some(95)));
        for n in 1..=1000usize {
            for percent in [50, 90, 95, 99] {
                let exact = (n * percent as usize).div_ceil(100).max(1);
                assert_eq!(rank(n, percent), exact);
            }
        }
    }
}
