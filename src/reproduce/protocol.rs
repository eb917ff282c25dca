//! How much of the paper's evaluation a reproduction runs: the paper's whole protocol, or a
//! quick run of the same comparisons that a laptop CPU finishes in minutes.

use crate::data::DatasetName;

/// Images, budgets and Figure 4 length of a reproduction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// Attack the first `n` test images (all of them when the set is smaller).
    pub n: usize,
    /// Budgets of Table 1 (untargeted).
    pub table1_budgets: Vec<usize>,
    /// Budgets of Table 2 (targeted).
    pub table2_budgets: Vec<usize>,
    /// Iterations of the Figure 4 runs (0: no Figure 4).
    pub fig4_steps: usize,
}

/// Images of the paper's evaluation (its Section 4.1: the first 1000 test images).
pub const PAPER_IMAGES: usize = 1000;

/// Iterations of the paper's Figure 4.
pub const PAPER_FIG4_STEPS: usize = 1000;

/// The last budget of the quick protocol: the budget at which the paper compares DDN-100 with
/// ANU at fewer iterations.
pub const QUICK_LAST_BUDGET: usize = 100;

impl Protocol {
    /// The paper's protocol for `dataset`: the first 1000 test images, every budget of its
    /// Tables 1 and 2, and Figure 4 over 1000 iterations.
    pub fn paper(dataset: DatasetName) -> Self {
        let info = dataset.info();
        Self {
            n: PAPER_IMAGES,
            table1_budgets: info.table1_budgets.to_vec(),
            table2_budgets: info.table2_budgets.to_vec(),
            fig4_steps: PAPER_FIG4_STEPS,
        }
    }

    /// A quick run of the same comparisons: the data set's `quick_images` first test images,
    /// each table at its shortest paper budget and at 100 iterations, and Figure 4 over 100
    /// iterations.
    pub fn quick(dataset: DatasetName) -> Self {
        let info = dataset.info();
        let short_and_100 = |budgets: &[usize]| {
            let mut chosen = vec![budgets[0], QUICK_LAST_BUDGET];
            chosen.dedup();
            chosen
        };
        Self {
            n: info.quick_images,
            table1_budgets: short_and_100(info.table1_budgets),
            table2_budgets: short_and_100(info.table2_budgets),
            fig4_steps: QUICK_LAST_BUDGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_protocol_is_the_papers_and_the_quick_one_a_subset_of_it() {
        for dataset in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::ImagenetSample] {
            let paper = Protocol::paper(dataset);
            let quick = Protocol::quick(dataset);
            assert_eq!(paper.n, 1000);
            assert_eq!(paper.table1_budgets, dataset.info().table1_budgets);
            assert_eq!(paper.fig4_steps, 1000);
            assert!(quick.n < paper.n && quick.n > 0);
            for (q, p) in [
                (&quick.table1_budgets, &paper.table1_budgets),
                (&quick.table2_budgets, &paper.table2_budgets),
            ] {
                assert!(q.iter().all(|b| p.contains(b)), "{q:?} not within {p:?}");
                assert_eq!(q.last(), Some(&100));
            }
        }
        assert_eq!(Protocol::quick(DatasetName::Mnist).table2_budgets, [50, 100]);
        assert_eq!(Protocol::quick(DatasetName::ImagenetSample).table2_budgets, [80, 100]);
    }
}
