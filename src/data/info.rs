//! Everything `anu` knows about each data set in one table: image shape, classes, the paper's
//! attack budgets and the defaults of adversarial training and robustness curves.

use std::path::Path;

use super::DatasetName;

/// Facts about one data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DatasetInfo {
    /// Name on the command line and in result files.
    pub name: &'static str,
    /// Folder below the data directory.
    pub folder: &'static str,
    /// Shape of one image: `[channels, height, width]`.
    pub image_shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Standard class names (a data folder may override them, see [`DatasetInfo::class_names`]).
    pub class_names: &'static [&'static str],
    /// Budgets of the paper's Table 1 (untargeted).
    pub table1_budgets: &'static [usize],
    /// Budgets of the paper's Table 2 (targeted, all other classes): they differ per data set
    /// (85 on MNIST, 80 on CIFAR-10 at the second budget).
    pub table2_budgets: &'static [usize],
    /// Maximum perturbation norm of adversarial training (paper section 5: 2.4 / 1.0).
    pub training_max_norm: f32,
    /// Largest eps of the robustness curve (Figure 5).
    pub robustness_max_eps: f64,
    /// Targets of the paper's targeted attacks (Table 2).
    pub targets: TargetProtocol,
    /// Attacks per batch on a CPU unless `--batch-size` says otherwise (large images need
    /// small batches).
    pub default_batch_size: usize,
    /// Attacks per batch on a GPU, where the whole batch goes through the model in one pass.
    pub default_gpu_batch_size: usize,
    /// Test images of the quick reproduction (`anu reproduce` without `--full`): as many as a
    /// laptop CPU attacks in minutes at budgets 50-100 with both tables.
    pub quick_images: usize,
}

/// Which target classes each image is attacked towards in Table 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetProtocol {
    /// Every class but the true one (MNIST, CIFAR-10: 9 attacks per image).
    AllOthers,
    /// This many distinct random classes other than the true one, drawn per image from a fixed
    /// seed (ImageNet: 20).
    Random {
        /// Targets per image.
        per_image: usize,
        /// Seed of the draw.
        seed: u64,
    },
}

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const MNIST: DatasetInfo = DatasetInfo {
    name: "mnist",
    folder: "mnist",
    image_shape: [1, 28, 28],
    num_classes: 10,
    class_names: &DIGITS,
    table1_budgets: &[50, 70, 100, 200, 500, 1000],
    table2_budgets: &[50, 85, 100, 300, 500, 1000],
    training_max_norm: 2.4,
    robustness_max_eps: 3.0,
    targets: TargetProtocol::AllOthers,
    default_batch_size: 1000,
    default_gpu_batch_size: 1000,
    quick_images: 100,
};

const CIFAR10: DatasetInfo = DatasetInfo {
    name: "cifar10",
    folder: "cifar10",
    image_shape: [3, 32, 32],
    num_classes: 10,
    class_names: &CIFAR10_CLASSES,
    table1_budgets: &[50, 70, 100, 200, 500, 1000],
    table2_budgets: &[50, 80, 100, 300, 500, 1000],
    training_max_norm: 1.0,
    robustness_max_eps: 1.5,
    targets: TargetProtocol::AllOthers,
    default_batch_size: 1000,
    default_gpu_batch_size: 1000,
    quick_images: 20,
};

const IMAGENET_SAMPLE: DatasetInfo = DatasetInfo {
    name: "imagenet-sample",
    folder: "imagenet-sample",
    image_shape: [3, 224, 224],
    num_classes: 1000,
    class_names: &[],
    table1_budgets: &[50, 70, 100, 200, 500, 1000],
    table2_budgets: &[80, 87, 100, 300, 500, 1000],
    training_max_norm: 1.0,
    robustness_max_eps: 2.0,
    targets: TargetProtocol::Random { per_image: 20, seed: 0 },
    default_batch_size: 25,
    default_gpu_batch_size: 100,
    quick_images: 2,
};

impl DatasetName {
    /// The facts about this data set.
    pub fn info(self) -> &'static DatasetInfo {
        match self {
            DatasetName::Mnist => &MNIST,
            DatasetName::Cifar10 => &CIFAR10,
            DatasetName::ImagenetSample => &IMAGENET_SAMPLE,
        }
    }
}

impl DatasetInfo {
    /// Class names: ImageNet's from `imagenet_classes.tsv`, CIFAR-10's from `batches.meta.txt`
    /// when the data folder has one with a name per class, else the standard names (class
    /// numbers where there are none).
    pub fn class_names(&self, data_dir: &Path) -> Vec<String> {
        if let Some(names) = super::imagenet::class_names(&data_dir.join(self.folder))
            && names.len() == self.num_classes
        {
            return names;
        }
        let from_file: Vec<String> = super::read_optional_text(&data_dir.join(self.folder).join("batches.meta.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if from_file.len() == self.num_classes {
            from_file
        } else if self.class_names.len() == self.num_classes {
            self.class_names.iter().map(|s| s.to_string()).collect()
        } else {
            (0..self.num_classes).map(|c| c.to_string()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_set_has_consistent_facts() {
        for name in [DatasetName::Mnist, DatasetName::Cifar10, DatasetName::ImagenetSample] {
            let info = name.info();
            assert_eq!(info.name, name.to_string());
            assert!(info.class_names.len() == info.num_classes || info.class_names.is_empty());
            let no_folder = Path::new("/nonexistent");
            assert_eq!(info.class_names(no_folder).len(), info.num_classes);
            assert!(info.table1_budgets.windows(2).all(|w| w[0] < w[1]));
            assert!(info.table2_budgets.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(DatasetName::Cifar10.info().class_names[3], "cat");
        assert_eq!(DatasetName::Mnist.info().table2_budgets[1], 85);
        assert_eq!(DatasetName::Cifar10.info().table2_budgets[1], 80);
        assert_eq!(DatasetName::ImagenetSample.info().table2_budgets[..2], [80, 87]);
        let no_folder = Path::new("/nonexistent");
        assert_eq!(DatasetName::Mnist.info().class_names(no_folder)[7], "7");
    }
}
