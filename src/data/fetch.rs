//! Downloading MNIST and CIFAR-10 into the data folder, in the layout the loaders read
//! (`anu data fetch`).
//!
//! Every file is checked against a checksum written in this file before it is put in place,
//! and nothing is downloaded unless asked for. A download grows in a hidden partial file beside
//! its target (`.<name>.part`, see [`crate::fsutil::partial_path`]). When the connection
//! breaks, the download is continued with an HTTP `Range` request where the server supports it
//! (and restarted where it does not): a few times in the same run, and by the next run for
//! what a run leaves behind. Only a complete file with the expected checksum is renamed onto
//! its target; a file with another checksum is deleted and the run fails, naming the address,
//! the expected and the found checksum. Files already present with the expected checksum are
//! not downloaded again.
//!
//! MNIST comes as its four original `.gz` files from standard public mirrors (the second is
//! tried when the first fails); CIFAR-10 as the archive of its binary version from its
//! authors' site, of which the six batch files are extracted (the archive is then deleted).
//! The addresses can be replaced, e.g. by a local mirror: a [`Plan`]'s base URLs, the
//! `--url` flag of `anu data fetch`, or the environment variables [`MNIST_URL_ENV`] and
//! [`CIFAR10_URL_ENV`] (one or more base URLs separated by commas).

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{DataError, DatasetName};
use crate::fsutil::{self, FileError};

/// Standard public mirrors of the original MNIST files, tried in this order.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The CIFAR-10 authors' site, which serves [`CIFAR10_ARCHIVE`].
pub const CIFAR10_MIRRORS: [&str; 1] = ["https://www.cs.toronto.edu/~kriz/"];

/// Environment variable that replaces [`MNIST_MIRRORS`] (base URLs separated by commas).
pub const MNIST_URL_ENV: &str = "ANU_DATA_URL_MNIST";

/// Environment variable that replaces [`CIFAR10_MIRRORS`] (base URLs separated by commas).
pub const CIFAR10_URL_ENV: &str = "ANU_DATA_URL_CIFAR10";

/// The four MNIST files (name on the mirror and in `<data-dir>/mnist/`) and the SHA-256 of
/// each. How they were obtained: computed from local copies of the four `.gz` files whose MD5
/// sums equal those published for the original files (train-images
/// f68b3c2dcbeaaa9fbdd348bbdeb94873, train-labels d53e105ee54ea40749a09fcbcd1e9432, t10k-images
/// 9fb629c4189551a2d022fa330f9573f3, t10k-labels ec29112dd5afa0611ce80d1b7f02629c), so they are
/// the SHA-256 of the files the mirrors serve.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

/// The archive of CIFAR-10's binary version.
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// The MD5 of [`CIFAR10_ARCHIVE`] as published on the CIFAR-10 page. It is checked once the
/// download is complete, before anything is extracted; the extracted files are then checked
/// against their own SHA-256 ([`CIFAR10_BATCHES`]).
pub const CIFAR10_ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// The six CIFAR-10 batch files: path in the archive, file written in `<data-dir>/cifar10/`,
/// and the SHA-256 of its content (30730000 bytes each). How they were obtained: computed from
/// local copies of the six batch files whose MD5 sums equal the official ones (data_batch_1
/// 5dd7e06a14cb22eb9f671a540d1b7c25 ... test_batch 803d5f7f4d78ea53de84dbe85f74fb6d).
pub const CIFAR10_BATCHES: [(&str, &str, &str); 6] = [
    (
        "cifar-10-batches-bin/data_batch_1.bin",
        "data_batch_1.bin",
        "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    ),
    (
        "cifar-10-batches-bin/data_batch_2.bin",
        "data_batch_2.bin",
        "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    ),
    (
        "cifar-10-batches-bin/data_batch_3.bin",
        "data_batch_3.bin",
        "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    ),
    (
        "cifar-10-batches-bin/data_batch_4.bin",
        "data_batch_4.bin",
        "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    ),
    (
        "cifar-10-batches-bin/data_batch_5.bin",
        "data_batch_5.bin",
        "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    ),
    (
        "cifar-10-batches-bin/test_batch.bin",
        "test_batch.bin",
        "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    ),
];

/// Largest download accepted (the CIFAR-10 archive holds about 170 MB): a server that sends
/// more is cut off rather than allowed to fill the disk.
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// Largest file extracted from an archive (a CIFAR-10 batch holds 30730000 bytes).
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// A checksum a file must have, as lower-case or upper-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-256.
    Sha256(String),
    /// MD5 (only where a publisher gives nothing stronger).
    Md5(String),
}

impl Checksum {
    /// The algorithm's name, for messages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "SHA-256",
            Checksum::Md5(_) => "MD5",
        }
    }

    /// The expected digest, as given.
    pub fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(hex) | Checksum::Md5(hex) => hex,
        }
    }

    /// Whether the hex digest `found` is the expected one.
    pub fn matches(&self, found: &str) -> bool {
        self.expected().eq_ignore_ascii_case(found)
    }

    /// The hex digest, in this checksum's algorithm, of everything `reader` yields.
    pub fn digest_of(&self, reader: impl Read) -> std::io::Result<String> {
        match self {
            Checksum::Sha256(_) => fsutil::sha256_hex_of(reader),
            Checksum::Md5(_) => md5_hex_of(reader),
        }
    }
}

/// Hex MD5 of everything `reader` yields, read in small pieces.
fn md5_hex_of(mut reader: impl Read) -> std::io::Result<String> {
    use md5::Digest;
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One file extracted from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its path inside the archive.
    pub path: String,
    /// The file written in the data set's folder.
    pub file: String,
    /// The SHA-256 its content must have.
    pub sha256: String,
}

/// One thing to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A file downloaded as it is from `<base URL><name>` to `<folder>/<name>`.
    File {
        /// Its name on the server and in the folder.
        name: String,
        /// The SHA-256 it must have.
        sha256: String,
    },
    /// A `.tar.gz` archive downloaded from `<base URL><name>`, of which `members` are
    /// extracted into the folder; the archive is deleted afterwards.
    Archive {
        /// Its name on the server (and of its partial file while it is downloaded).
        name: String,
        /// The checksum of the whole archive, checked before extraction, when one is known.
        checksum: Option<Checksum>,
        /// The files taken from it.
        members: Vec<Member>,
    },
}

/// Where to download a data set from and what it consists of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Base URLs, tried in this order; a file's address is the base URL followed by its name.
    pub base_urls: Vec<String>,
    /// The files to obtain.
    pub items: Vec<Item>,
}

/// How downloads are made.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Tries per address: after a broken connection the download is continued this many times
    /// less one before the next address is tried.
    pub attempts: usize,
    /// Pause before trying again.
    pub retry_wait: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from the server.
    pub read_timeout: Duration,
    /// Slowest transfer accepted, in bytes per second, averaged over every [`Self::rate_window`]:
    /// a server that keeps the connection alive with a trickle (which no read timeout catches)
    /// is given up on, and the bytes it sent are kept for the next try.
    pub min_rate: u64,
    /// The span over which [`Self::min_rate`] is measured.
    pub rate_window: Duration,
    /// Most bytes accepted for one file: a body that goes on beyond it is junk, and is deleted.
    pub max_bytes: u64,
    /// Show a progress bar per download (on stderr, and only on a terminal).
    pub progress: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            retry_wait: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            min_rate: 1024,
            rate_window: Duration::from_secs(60),
            max_bytes: MAX_DOWNLOAD_BYTES,
            progress: true,
        }
    }
}

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Files written by this fetch.
    pub written: Vec<PathBuf>,
    /// Files that were already there with the expected checksum (nothing downloaded for them).
    pub present: Vec<PathBuf>,
    /// Bytes received from servers.
    pub bytes_downloaded: u64,
}

/// A failed download, always naming the address or the file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The data set has no public download.
    #[error("{0}")]
    Unsupported(String),
    /// A downloaded file, or a file taken from a downloaded archive, has another checksum than
    /// expected; it has been deleted.
    #[error(
        "{url}: {what} has {algorithm} {found}, expected {expected}; the bad download was deleted (run the command again; if it fails again, the server does not serve the expected file)"
    )]
    Checksum {
        /// The address it came from.
        url: String,
        /// The file (or the file inside the archive).
        what: String,
        /// The algorithm.
        algorithm: &'static str,
        /// The expected digest.
        expected: String,
        /// The digest of what was received.
        found: String,
    },
    /// No address delivered the file.
    #[error("{file}: download failed: {reasons}")]
    Download {
        /// The file that was to be written.
        file: PathBuf,
        /// Every address tried and why it failed, and where the partial download is kept.
        reasons: String,
    },
    /// A downloaded archive cannot be read or lacks a file.
    #[error("{url}: {reason}")]
    Archive {
        /// The address it came from.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A file already in the data folder is in the way.
    #[error("{path}: {reason}")]
    InTheWay {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A file or folder could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// The plan of `dataset` with its standard files and checksums, downloaded from `base_urls`
/// (when empty: the addresses in the data set's environment variable, else its standard
/// mirrors).
pub fn plan(dataset: DatasetName, base_urls: &[String]) -> Result<Plan, FetchError> {
    let items = match dataset {
        DatasetName::Mnist => MNIST_FILES
            .iter()
            .map(|(name, sha256)| Item::File {
                name: name.to_string(),
                sha256: sha256.to_string(),
            })
            .collect(),
        DatasetName::Cifar10 => vec![Item::Archive {
            name: CIFAR10_ARCHIVE.to_string(),
            checksum: Some(Checksum::Md5(CIFAR10_ARCHIVE_MD5.to_string())),
            members: CIFAR10_BATCHES
                .iter()
                .map(|(path, file, sha256)| Member {
                    path: path.to_string(),
                    file: file.to_string(),
                    sha256: sha256.to_string(),
                })
                .collect(),
        }],
        DatasetName::ImagenetSample => {
            return Err(FetchError::Unsupported(format!(
                "{dataset} has no public download: put the images and images.tsv in <data-dir>/{}/ (see the README)",
                dataset.info().folder
            )));
        }
    };
    let base_urls = match base_urls.is_empty() {
        true => default_base_urls(dataset),
        false => base_urls.to_vec(),
    };
    Ok(Plan { base_urls, items })
}

/// The base URLs of `dataset` when none is given: those in its environment variable, else its
/// standard mirrors.
pub fn default_base_urls(dataset: DatasetName) -> Vec<String> {
    let (env, mirrors): (&str, &[&str]) = match dataset {
        DatasetName::Mnist => (MNIST_URL_ENV, &MNIST_MIRRORS),
        DatasetName::Cifar10 => (CIFAR10_URL_ENV, &CIFAR10_MIRRORS),
        DatasetName::ImagenetSample => return Vec::new(),
    };
    let from_env = std::env::var(env).map(|v| split_urls(&v)).unwrap_or_default();
    match from_env.is_empty() {
        true => mirrors.iter().map(|m| m.to_string()).collect(),
        false => from_env,
    }
}

/// Base URLs from a comma-separated list (blanks ignored).
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// Downloads `dataset` into `<data_dir>/<its folder>/` with the standard checksums, from
/// `base_urls` (see [`plan`] for an empty list).
pub fn fetch_dataset(
    dataset: DatasetName,
    data_dir: &Path,
    base_urls: &[String],
    options: &FetchOptions,
) -> Result<FetchReport, FetchError> {
    let plan = plan(dataset, base_urls)?;
    fetch(&plan, &data_dir.join(dataset.info().folder), options)
}

/// Obtains every item of `plan` in `folder`: items already there with the expected checksum
/// are left alone, the others are downloaded, verified and put in place. One fetch runs at a
/// time per folder: a second one (say, another process) waits for the first to finish, then
/// finds its files in place.
pub fn fetch(plan: &Plan, folder: &Path, options: &FetchOptions) -> Result<FetchReport, FetchError> {
    let mut fetcher = Fetcher::new(plan, folder, options)?;
    let _lock = fsutil::lock_folder(folder, || {
        eprintln!(
            "{}: another download into this folder is running; waiting for it to finish",
            folder.display()
        )
    })?;
    for item in &plan.items {
        match item {
            Item::File { name, sha256 } => fetcher.file(name, sha256)?,
            Item::Archive {
                name,
                checksum,
                members,
            } => fetcher.archive(name, checksum.as_ref(), members)?,
        }
    }
    Ok(fetcher.report)
}

/// The command that downloads `dataset` into `data_dir`, for messages; `None` for a data set
/// without a public download.
pub fn fetch_command(dataset: DatasetName, data_dir: &Path) -> Option<String> {
    if dataset == DatasetName::ImagenetSample {
        return None;
    }
    let dir = data_dir.display().to_string();
    let dir = match dir.contains(char::is_whitespace) || dir.contains('\'') {
        true => format!("'{}'", dir.replace('\'', r"'\''")),
        false => dir,
    };
    Some(format!("anu data fetch --dataset {dataset} --data-dir {dir}"))
}

/// `error` with, when it says that files of `dataset` are missing, the command that downloads
/// them.
pub fn with_fetch_hint(error: DataError, dataset: DatasetName, data_dir: &Path) -> DataError {
    match (error, fetch_command(dataset, data_dir)) {
        (DataError::Missing(text), Some(command)) => {
            DataError::Missing(format!("{text}; to download {dataset}: {command}"))
        }
        (error, _) => error,
    }
}

/// The address of `name` below the base URL `base`.
fn join_url(base: &str, name: &str) -> String {
    match base.ends_with('/') {
        true => format!("{base}{name}"),
        false => format!("{base}/{name}"),
    }
}

/// Whether `url` names this machine (`localhost`, `127.x.x.x` or `[::1]`).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why one try at a download failed.
enum Failure {
    /// Worth trying again at the same address (the connection broke, the server is busy).
    Transient(String),
    /// Not worth trying again there (the server answers that it lacks or refuses the file).
    Permanent(String),
    /// A local file could not be written.
    Local(FileError),
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Self {
        Failure::Local(e)
    }
}

/// The state of one [`fetch`]: the HTTP client, where files go, and what was done.
struct Fetcher<'a> {
    agent: ureq::Agent,
    base_urls: &'a [String],
    folder: &'a Path,
    options: &'a FetchOptions,
    report: FetchReport,
}

impl<'a> Fetcher<'a> {
    /// A fetcher for `plan` into `folder`.
    fn new(plan: &'a Plan, folder: &'a Path, options: &'a FetchOptions) -> Result<Self, FetchError> {
        if plan.base_urls.is_empty() {
            return Err(FetchError::Unsupported("no address to download from".to_string()));
        }
        let mut config = ureq::Agent::config_builder();
        // A proxy (from the environment) cannot reach this machine's own loopback addresses.
        if plan.base_urls.iter().all(|u| is_loopback(u)) {
            config = config.proxy(None);
        }
        let agent = config
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .user_agent(format!("anu/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            agent,
            base_urls: &plan.base_urls,
            folder,
            options,
            report: FetchReport::default(),
        })
    }

    /// Obtains the plain file `name`.
    fn file(&mut self, name: &str, sha256: &str) -> Result<(), FetchError> {
        let target = self.folder.join(name);
        if let Some(path) = present(&target, sha256)? {
            self.report.present.push(path);
            return Ok(());
        }
        let partial = fsutil::partial_path(&target);
        let url = self.download(name, &partial)?;
        verify(&url, name, &partial, &Checksum::Sha256(sha256.to_string()))?;
        fsutil::finish_partial(&partial, &target)?;
        self.report.written.push(target);
        Ok(())
    }

    /// Obtains the members of the archive `name` that are not already present.
    fn archive(&mut self, name: &str, checksum: Option<&Checksum>, members: &[Member]) -> Result<(), FetchError> {
        let mut wanted = Vec::new();
        for member in members {
            match present(&self.folder.join(&member.file), &member.sha256)? {
                Some(path) => self.report.present.push(path),
                None => wanted.push(member),
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let partial = fsutil::partial_path(&self.folder.join(name));
        let url = self.download(name, &partial)?;
        if let Some(checksum) = checksum {
            verify(&url, name, &partial, checksum)?;
        }
        match extract(&url, &partial, &wanted, self.folder) {
            Ok(written) => {
                fsutil::remove_if_present(&partial)?;
                self.report.written.extend(written);
                Ok(())
            }
            // The archive is fine but a file could not be written: it is kept for the next run.
            Err(e @ FetchError::File(_)) => Err(e),
            // A bad archive is deleted.
            Err(e) => {
                fsutil::remove_if_present(&partial)?;
                Err(e)
            }
        }
    }

    /// Downloads `name` into `partial` from the first base URL that delivers it whole (the
    /// content is not checked here); returns the address used.
    fn download(&mut self, name: &str, partial: &Path) -> Result<String, FetchError> {
        let mut reasons = Vec::new();
        for base in self.base_urls {
            let url = join_url(base, name);
            match self.download_from(&url, name, partial) {
                Ok(()) => return Ok(url),
                Err(Failure::Local(e)) => return Err(e.into()),
                Err(Failure::Transient(why) | Failure::Permanent(why)) => reasons.push(format!("{url}: {why}")),
            }
        }
        let kept = fsutil::partial_len(partial).unwrap_or(0);
        if kept > 0 {
            reasons.push(format!(
                "the {kept} bytes received are kept in {} and the next run continues from there",
                partial.display()
            ));
        }
        Err(FetchError::Download {
            file: self.folder.join(name),
            reasons: reasons.join("; "),
        })
    }

    /// Tries `url` up to [`FetchOptions::attempts`] times, each try continuing what the last
    /// one left in `partial`.
    fn download_from(&mut self, url: &str, name: &str, partial: &Path) -> Result<(), Failure> {
        let mut last = String::new();
        for attempt in 1..=self.options.attempts.max(1) {
            if attempt > 1 {
                std::thread::sleep(self.options.retry_wait);
            }
            match self.transfer(url, name, partial) {
                Ok(()) => return Ok(()),
                Err(Failure::Transient(why)) => last = why,
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Transient(last))
    }

    /// One request for `url`: asks for the bytes after those already in `partial` and appends
    /// them (or, when the server sends the whole file, starts `partial` anew).
    fn transfer(&mut self, url: &str, name: &str, partial: &Path) -> Result<(), Failure> {
        let offset = fsutil::partial_len(partial)?;
        let mut request = self.agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| Failure::Transient(e.to_string()))?;
        let status = response.status().as_u16();
        let length = header(&response, "content-length").and_then(|v| v.parse::<u64>().ok());
        let resume = match status {
            200 => false,
            206 if offset > 0 && range_starts_at(header(&response, "content-range"), offset) => true,
            206 => {
                fsutil::remove_if_present(partial)?;
                return Err(Failure::Transient(
                    "the server sent another part of the file than asked for; starting again".to_string(),
                ));
            }
            // The partial file already holds the whole file (or more): its checksum decides.
            416 if offset > 0 => return Ok(()),
            408 | 429 | 500..=599 => return Err(Failure::Transient(format!("the server answered HTTP {status}"))),
            _ => return Err(Failure::Permanent(format!("the server answered HTTP {status}"))),
        };
        let start = if resume { offset } else { 0 };
        let file = fsutil::open_partial(partial, resume)?;
        let bar = self.progress_bar(name, start, length.map(|l| start + l));
        let result = self.copy_body(response.into_body(), file, partial, start, length, &bar);
        bar.finish_and_clear();
        result
    }

    /// Appends the body to `file` (the partial file `path`, which already holds `start`
    /// bytes); fails when the body ends before the `length` bytes the server announced.
    fn copy_body(
        &mut self,
        body: ureq::Body,
        mut file: std::fs::File,
        path: &Path,
        start: u64,
        length: Option<u64>,
        bar: &ProgressBar,
    ) -> Result<(), Failure> {
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        let (max_bytes, window) = (self.options.max_bytes, self.options.rate_window);
        let mut window_start = (std::time::Instant::now(), 0u64);
        let outcome = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    break Err(Failure::Transient(format!(
                        "the connection broke after {} bytes: {e}",
                        start + got
                    )));
                }
            };
            if start + got + n as u64 > max_bytes {
                // Nothing of such a body can be trusted: it is deleted, not continued.
                drop(file);
                fsutil::remove_if_present(path)?;
                return Err(Failure::Permanent(format!(
                    "the server sends more than {max_bytes} bytes, far more than the file holds; what it sent is deleted"
                )));
            }
            file.write_all(&buf[..n])
                .map_err(|e| FileError::new(path, "cannot write", e))?;
            got += n as u64;
            self.report.bytes_downloaded += n as u64;
            bar.inc(n as u64);
            let elapsed = window_start.0.elapsed();
            if elapsed >= window {
                let rate = (got - window_start.1) as f64 / elapsed.as_secs_f64();
                if rate < self.options.min_rate as f64 {
                    break Err(Failure::Transient(format!(
                        "the server sent {} bytes in the last {:.0} s, slower than the {} bytes/s accepted",
                        got - window_start.1,
                        elapsed.as_secs_f64(),
                        self.options.min_rate
                    )));
                }
                window_start = (std::time::Instant::now(), got);
            }
        };
        // What arrived is kept for the next try, whatever happened after it.
        file.sync_all().map_err(|e| FileError::new(path, "cannot write", e))?;
        outcome?;
        match length {
            Some(len) if got < len => Err(Failure::Transient(format!(
                "the connection closed after {} of {} bytes",
                start + got,
                start + len
            ))),
            _ => Ok(()),
        }
    }

    /// A byte-counting progress bar for `name` (hidden unless progress is wanted).
    fn progress_bar(&self, name: &str, start: u64, total: Option<u64>) -> ProgressBar {
        if !self.options.progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}, {bytes_per_sec}, eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {spinner} {bytes}, {bytes_per_sec}").expect("valid template"),
            ),
        };
        bar.set_prefix(name.to_string());
        bar.set_position(start);
        bar
    }
}

/// The value of the response header `name`, when it is text.
fn header<'r>(response: &'r ureq::http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether a `Content-Range` header (`bytes START-END/TOTAL`) starts at `offset`.
fn range_starts_at(content_range: Option<&str>, offset: u64) -> bool {
    content_range
        .and_then(|v| v.trim().strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|start| start.trim().parse::<u64>().ok())
        == Some(offset)
}

/// The file at `target` (or, where the loaders read it first, `<target>.gz`), when it holds
/// content with the SHA-256 `sha256`. A `<target>.gz` whose content differs is refused: the
/// loaders would read it rather than the downloaded file.
fn present(target: &Path, sha256: &str) -> Result<Option<PathBuf>, FetchError> {
    let checksum = Checksum::Sha256(sha256.to_string());
    let is_gz = target.extension().is_some_and(|e| e == "gz");
    if !is_gz {
        let mut name = target.as_os_str().to_owned();
        name.push(".gz");
        let gz = PathBuf::from(name);
        if let Some(found) = digest_if_present(&gz, &checksum, true)? {
            if checksum.matches(&found) {
                return Ok(Some(gz));
            }
            return Err(FetchError::InTheWay {
                path: gz,
                reason: format!(
                    "its content has SHA-256 {found}, not the expected {sha256}; the loaders read it before {}, so remove it and run this again",
                    target.display()
                ),
            });
        }
    }
    match digest_if_present(target, &checksum, false)? {
        Some(found) if checksum.matches(&found) => Ok(Some(target.to_path_buf())),
        _ => Ok(None),
    }
}

/// The digest of the file `path` (of its gunzipped content with `gunzip`), or `None` when
/// there is no such file. A gzip file that cannot be decompressed gets an empty digest.
fn digest_if_present(path: &Path, checksum: &Checksum, gunzip: bool) -> Result<Option<String>, FetchError> {
    let file = match fsutil::open_regular(path) {
        Ok((file, _)) => BufReader::new(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::new(path, "cannot read", e).into()),
    };
    let digest = match gunzip {
        true => checksum
            .digest_of(flate2::bufread::MultiGzDecoder::new(file))
            .unwrap_or_else(|e| format!("(unreadable: {e})")),
        false => checksum
            .digest_of(file)
            .map_err(|e| FileError::new(path, "cannot read", e))?,
    };
    Ok(Some(digest))
}

/// Checks that the downloaded file `partial` (from `url`, to become `name`) has `checksum`;
/// otherwise deletes it and fails naming both digests.
fn verify(url: &str, name: &str, partial: &Path, checksum: &Checksum) -> Result<(), FetchError> {
    let found = digest_if_present(partial, checksum, false)?.unwrap_or_default();
    if checksum.matches(&found) {
        return Ok(());
    }
    fsutil::remove_if_present(partial)?;
    Err(FetchError::Checksum {
        url: url.to_string(),
        what: name.to_string(),
        algorithm: checksum.algorithm(),
        expected: checksum.expected().to_string(),
        found,
    })
}

/// Extracts `members` of the `.tar.gz` archive `archive` (downloaded from `url`) into
/// `folder`, each checked against its SHA-256 before it is written; returns the files written.
fn extract(url: &str, archive: &Path, members: &[&Member], folder: &Path) -> Result<Vec<PathBuf>, FetchError> {
    let bad = |reason: String| FetchError::Archive {
        url: url.to_string(),
        reason,
    };
    let file = std::fs::File::open(archive).map_err(|e| FileError::new(archive, "cannot read", e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut written = Vec::new();
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a readable .tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a readable .tar.gz archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./");
        let Some(member) = members.iter().find(|m| m.path == path) else {
            continue;
        };
        let bytes = member_bytes(&mut entry, path).map_err(bad)?;
        let found = fsutil::sha256_hex(&bytes);
        if !found.eq_ignore_ascii_case(&member.sha256) {
            return Err(FetchError::Checksum {
                url: url.to_string(),
                what: format!("{path} in the archive"),
                algorithm: "SHA-256",
                expected: member.sha256.clone(),
                found,
            });
        }
        let target = folder.join(&member.file);
        fsutil::write_atomic(&target, &bytes)?;
        written.push(target);
    }
    let missing: Vec<&str> = members
        .iter()
        .filter(|m| !written.contains(&folder.join(&m.file)))
        .map(|m| m.path.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!("the archive lacks {}", missing.join(", "))));
    }
    Ok(written)
}

/// The content of the regular file `entry` (at `path` in an archive), at most
/// [`MAX_MEMBER_BYTES`].
fn member_bytes(entry: &mut tar::Entry<impl Read>, path: &str) -> Result<Vec<u8>, String> {
    if !entry.header().entry_type().is_file() {
        return Err(format!("{path} in the archive is not a regular file"));
    }
    let size = entry.size();
    if size > MAX_MEMBER_BYTES {
        return Err(format!(
            "{path} in the archive holds {size} bytes, more than a data file"
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path} in the archive cannot be read: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_and_split() {
        assert_eq!(join_url("http://a/b/", "f.gz"), "http://a/b/f.gz");
        assert_eq!(join_url("http://a/b", "f.gz"), "http://a/b/f.gz");
        assert_eq!(split_urls(" http://a/ ,, http://b "), ["http://a/", "http://b"]);
        assert!(split_urls(" , ").is_empty());
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for url in [
            "http://127.0.0.1:8000/mnist/",
            "http://localhost/",
            "http://[::1]:80/x",
            "http://u@127.0.0.2",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://10.0.0.1/",
            "http://[2001:db8::1]/",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn content_range_must_start_at_the_offset() {
        assert!(range_starts_at(Some("bytes 100-199/200"), 100));
        assert!(!range_starts_at(Some("bytes 0-199/200"), 100));
        assert!(!range_starts_at(Some("items 100-199/200"), 100));
        assert!(!range_starts_at(None, 100));
    }

    #[test]
    fn the_standard_plans_use_the_constants_and_the_mirrors() {
        let mnist = plan(DatasetName::Mnist, &[]).unwrap();
        assert_eq!(mnist.items.len(), 4);
        let explicit = plan(DatasetName::Cifar10, &["http://localhost/".to_string()]).unwrap();
        assert_eq!(explicit.base_urls, ["http://localhost/"]);
        let Item::Archive { members, checksum, .. } = &explicit.items[0] else {
            panic!("CIFAR-10 comes as an archive")
        };
        assert_eq!(members.len(), 6);
        assert_eq!(checksum.as_ref().unwrap().algorithm(), "MD5");
        for (_, sha256) in MNIST_FILES {
            assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        for (_, _, sha256) in CIFAR10_BATCHES {
            assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(plan(DatasetName::ImagenetSample, &[]).is_err());
    }

    #[test]
    fn the_hint_names_the_command() {
        let hint = with_fetch_hint(
            DataError::Missing("none found".into()),
            DatasetName::Cifar10,
            Path::new("my data"),
        );
        assert_eq!(
            hint.to_string(),
            "none found; to download cifar10: anu data fetch --dataset cifar10 --data-dir 'my data'"
        );
        let other = with_fetch_hint(DataError::Invalid("x".into()), DatasetName::Mnist, Path::new("d"));
        assert_eq!(other.to_string(), "invalid data set: x");
    }

    #[test]
    fn md5_of_a_known_text() {
        assert_eq!(md5_hex_of(&b"abc"[..]).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
