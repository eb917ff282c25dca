//! Summaries of attack norms as reported in the paper's tables, and of attack traces.

use super::Trace;

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

/// Per-iteration medians over all attacks of a [`Trace`], for diagnosing convergence.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceSummary {
    /// Median over the attacks that have succeeded so far of their best adversarial norm
    /// (`None` before any has).
    pub median_best_norm: Vec<Option<f64>>,
    /// Fraction of attacks that have found an adversarial so far.
    pub found_fraction: Vec<f64>,
    /// Median radius eps_k.
    pub median_eps: Vec<f64>,
    /// Median norm-update factor gamma_k.
    pub median_gamma: Vec<f64>,
}

impl TraceSummary {
    /// Summarises `trace` iteration by iteration.
    pub fn of(trace: &Trace) -> Self {
        let median_of = |row: &[f32]| mean_median(row).1;
        Self {
            median_best_norm: trace
                .best_norm
                .iter()
                .map(|row| {
                    let m = median_of(row);
                    m.is_finite().then_some(m)
                })
                .collect(),
            found_fraction: trace
                .best_norm
                .iter()
                .map(|row| row.iter().filter(|v| v.is_finite()).count() as f64 / row.len().max(1) as f64)
                .collect(),
            median_eps: trace.eps.iter().map(|row| median_of(row)).collect(),
            median_gamma: trace.gamma.iter().map(|row| median_of(row)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_summary_takes_medians_per_iteration() {
        let trace = Trace {
            best_norm: vec![vec![f32::INFINITY, f32::INFINITY], vec![2.0, f32::INFINITY]],
            norm: vec![vec![0.0, 0.0], vec![2.0, 1.0]],
            eps: vec![vec![1.0, 3.0], vec![1.0, 1.0]],
            gamma: vec![vec![0.4, 0.2], vec![0.5, 0.5]],
        };
        let summary = TraceSummary::of(&trace);
        assert_eq!(summary.median_best_norm, vec![None, Some(2.0)]);
        assert_eq!(summary.found_fraction, vec![0.0, 0.5]);
        assert_eq!(summary.median_eps, vec![2.0, 1.0]);
        assert!((summary.median_gamma[0] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn mean_and_median_skip_failures() {
        let (mean, median) = mean_median(&[1.0, 3.0, f32::INFINITY, 2.0, 6.0]);
        assert!((mean - 3.0).abs() < 1e-12);
        assert!((median - 2.5).abs() < 1e-12);
    }
}
