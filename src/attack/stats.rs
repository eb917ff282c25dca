//! Summaries of attack norms as reported in the paper's tables.

/// Mean and median of the finite values (failed attacks, stored as infinity, are left out).
pub fn mean_median(norms: &[f32]) -> (f64, f64) {
    let mut v: Vec<f64> = norms.iter().filter(|n| n.is_finite()).map(|&n| n as f64).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    (mean, median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_median_skip_failures() {
        let (mean, median) = mean_median(&[1.0, 3.0, f32::INFINITY, 2.0, 6.0]);
        assert!((mean - 3.0).abs() < 1e-12);
        assert!((median - 2.5).abs() < 1e-12);
    }
}
