//! `anu data fetch` without the internet: a small HTTP server on 127.0.0.1 serves generated
//! files (whole, corrupted, cut short, with or without `Range` support), and the fetch is
//! checked to land verified files in the layout the loaders read, to resume what was cut
//! short, to refuse and delete what does not match its checksum, and to download nothing when
//! the files are already there.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anu::data::fetch::{self, Checksum, FetchError, FetchOptions, Item, Member, Plan};
use anu::data::{self, DatasetName, Split};
use anu::fsutil::{partial_path, sha256_hex};

/// How the server answers for one file.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// The file as it is, honouring `Range`.
    Normal,
    /// The file with one byte changed.
    Corrupt,
    /// The first `n` answers announce the whole length but close the connection halfway.
    CutShort(usize),
    /// Like `CutShort`, and `Range` is ignored (every answer is the whole file, status 200).
    CutShortNoRange(usize),
    /// No length is announced and the body never ends (junk until the client hangs up).
    Endless,
    /// The file, one byte every 100 ms.
    Trickle,
}

/// One request the server received: the path and the first byte asked for, if any.
#[derive(Clone, Debug, PartialEq)]
struct Request {
    path: String,
    range_start: Option<u64>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, Behaviour)>,
    requests: Vec<Request>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1, one connection at a time, each closed after its answer.
struct Server {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Starts serving nothing yet (every path answers 404).
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &shared);
            }
        });
        Server { base, state }
    }

    /// Serves `bytes` at `path` (below the root, e.g. `mnist/x.gz`) in the given way.
    fn serve(&self, path: &str, bytes: &[u8], behaviour: Behaviour) {
        let mut state = self.state.lock().unwrap();
        state.files.insert(format!("/{path}"), (bytes.to_vec(), behaviour));
    }

    /// The requests received for `path` so far.
    fn requests_for(&self, path: &str) -> Vec<Request> {
        let path = format!("/{path}");
        let state = self.state.lock().unwrap();
        state.requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Number of requests received so far.
    fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// The base URL of the folder `dir` on this server.
    fn url(&self, dir: &str) -> String {
        format!("{}{dir}/", self.base)
    }
}

/// Reads one request from `stream` and answers it as the state says.
fn answer(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_start = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range:") {
            let value = value.trim().trim_start_matches("bytes=");
            range_start = value.split('-').next().and_then(|v| v.parse::<u64>().ok());
        }
    }
    let (file, behaviour, earlier) = {
        let mut state = state.lock().unwrap();
        let earlier = state.requests.iter().filter(|r| r.path == path).count();
        state.requests.push(Request {
            path: path.clone(),
            range_start,
        });
        match state.files.get(&path) {
            Some((bytes, behaviour)) => (bytes.clone(), *behaviour, earlier),
            None => {
                return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    };
    let mut body = file;
    if behaviour == Behaviour::Corrupt {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }
    if behaviour == Behaviour::Endless {
        stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
        let junk = vec![b'x'; 1 << 16];
        loop {
            stream.write_all(&junk)?;
        }
    }
    let (honour_range, cut) = match behaviour {
        Behaviour::Normal | Behaviour::Corrupt | Behaviour::Endless | Behaviour::Trickle => (true, false),
        Behaviour::CutShort(n) => (true, earlier < n),
        Behaviour::CutShortNoRange(n) => (false, earlier < n),
    };
    let total = body.len() as u64;
    let mut head = String::new();
    let start = match range_start {
        Some(start) if honour_range && start >= total => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return stream.write_all(head.as_bytes());
        }
        Some(start) if honour_range => {
            head.push_str("HTTP/1.1 206 Partial Content\r\n");
            head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", total - 1));
            start as usize
        }
        _ => {
            head.push_str("HTTP/1.1 200 OK\r\n");
            0
        }
    };
    let body = &body[start..];
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    let sent = if cut { &body[..body.len() / 2] } else { body };
    if behaviour == Behaviour::Trickle {
        for byte in sent {
            stream.write_all(std::slice::from_ref(byte))?;
            stream.flush()?;
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        stream.write_all(sent)?;
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

/// Options for tests: no progress bars, no pauses.
fn options(attempts: usize) -> FetchOptions {
    FetchOptions {
        attempts,
        retry_wait: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        progress: false,
        ..FetchOptions::default()
    }
}

/// `bytes` gzip-compressed.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The four MNIST files (gzip-compressed IDX) of a tiny set: `n` images per split.
fn mnist_files(n: u32) -> Vec<(String, Vec<u8>)> {
    let images = |n: u32| {
        let mut bytes = vec![0, 0, 8, 3];
        for v in [n, 28, 28] {
            bytes.extend(v.to_be_bytes());
        }
        bytes.extend((0..n as usize * 28 * 28).map(|i| (i % 256) as u8));
        gzip(&bytes)
    };
    let labels = |n: u32| {
        let mut bytes = vec![0, 0, 8, 1];
        bytes.extend(n.to_be_bytes());
        bytes.extend((0..n).map(|i| (i % 10) as u8));
        gzip(&bytes)
    };
    vec![
        ("train-images-idx3-ubyte.gz".to_string(), images(n + 1)),
        ("train-labels-idx1-ubyte.gz".to_string(), labels(n + 1)),
        ("t10k-images-idx3-ubyte.gz".to_string(), images(n)),
        ("t10k-labels-idx1-ubyte.gz".to_string(), labels(n)),
    ]
}

/// A plan for `files` (with their true checksums) from `base_urls`.
fn file_plan(files: &[(String, Vec<u8>)], base_urls: Vec<String>) -> Plan {
    Plan {
        base_urls,
        items: files
            .iter()
            .map(|(name, bytes)| Item::File {
                name: name.clone(),
                sha256: sha256_hex(bytes),
            })
            .collect(),
    }
}

/// Serves the tiny MNIST set below `mnist/` in the normal way; returns the files.
fn serve_mnist(server: &Server) -> Vec<(String, Vec<u8>)> {
    let files = mnist_files(3);
    for (name, bytes) in &files {
        server.serve(&format!("mnist/{name}"), bytes, Behaviour::Normal);
    }
    files
}

/// The sorted names of `files`.
fn sorted_names(files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names
}

#[test]
fn a_good_fetch_lands_the_files_and_the_loader_reads_them() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("mnist")]);

    let report = fetch::fetch(&plan, &folder, &options(1)).unwrap();
    assert_eq!(report.written.len(), 4);
    assert!(report.present.is_empty());
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(report.bytes_downloaded, total as u64);
    assert_eq!(
        common::file_names(&folder),
        sorted_names(&files),
        "only the four files, no partial file"
    );
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(folder.join(name)).unwrap(), bytes);
        assert_eq!(server.requests_for(&format!("mnist/{name}"))[0].range_start, None);
    }

    let test = data::load(DatasetName::Mnist, root.path(), Split::Test).unwrap();
    assert_eq!((test.len(), test.labels.clone()), (3, vec![0, 1, 2]));
    let train = data::load(DatasetName::Mnist, root.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 4);

    // Fetching again finds every file intact and downloads nothing.
    let before = server.request_count();
    let again = fetch::fetch(&plan, &folder, &options(1)).unwrap();
    assert_eq!(
        (again.written.len(), again.present.len(), again.bytes_downloaded),
        (0, 4, 0)
    );
    assert_eq!(server.request_count(), before, "no request when the files are present");
}

#[test]
fn a_corrupted_response_fails_naming_the_url_and_both_hashes_and_leaves_no_file() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let (name, bytes) = &files[2];
    server.serve(&format!("mnist/{name}"), bytes, Behaviour::Corrupt);
    let mut corrupted = bytes.clone();
    corrupted[bytes.len() / 2] ^= 0xff;
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");

    let err = fetch::fetch(&file_plan(&files, vec![server.url("mnist")]), &folder, &options(2)).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    let text = err.to_string();
    let url = format!("{}{name}", server.url("mnist"));
    for part in [url.as_str(), &sha256_hex(bytes), &sha256_hex(&corrupted), "SHA-256"] {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
    assert!(!folder.join(name).exists());
    assert!(
        !partial_path(&folder.join(name)).exists(),
        "the bad download was deleted"
    );
    // The files before it were verified and kept; nothing else is left.
    assert_eq!(common::file_names(&folder), sorted_names(&files[..2]));
}

#[test]
fn a_cut_connection_is_resumed_with_range_in_the_same_run() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let (name, bytes) = &files[0];
    server.serve(&format!("mnist/{name}"), bytes, Behaviour::CutShort(1));
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");

    fetch::fetch(&file_plan(&files, vec![server.url("mnist")]), &folder, &options(3)).unwrap();
    assert_eq!(&std::fs::read(folder.join(name)).unwrap(), bytes);
    let requests = server.requests_for(&format!("mnist/{name}"));
    let half = (bytes.len() / 2) as u64;
    assert_eq!(
        requests.iter().map(|r| r.range_start).collect::<Vec<_>>(),
        [None, Some(half)]
    );
    assert_eq!(common::file_names(&folder), sorted_names(&files));
}

#[test]
fn an_interrupted_download_fails_without_a_half_file_and_the_next_run_continues_it() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let (name, bytes) = &files[0];
    server.serve(&format!("mnist/{name}"), bytes, Behaviour::CutShort(1));
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("mnist")]);

    let err = fetch::fetch(&plan, &folder, &options(1)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Download { .. }), "{text}");
    assert!(text.contains(&format!("{}{name}", server.url("mnist"))), "{text}");
    assert!(text.contains("next run continues"), "{text}");
    let target = folder.join(name);
    assert!(!target.exists(), "no half file at the target");
    let half = (bytes.len() / 2) as u64;
    assert_eq!(std::fs::metadata(partial_path(&target)).unwrap().len(), half);

    let report = fetch::fetch(&plan, &folder, &options(1)).unwrap();
    assert_eq!(&std::fs::read(&target).unwrap(), bytes);
    assert_eq!(server.requests_for(&format!("mnist/{name}"))[1].range_start, Some(half));
    let rest: usize = files[1..].iter().map(|(_, b)| b.len()).sum();
    assert_eq!(report.bytes_downloaded, bytes.len() as u64 - half + rest as u64);
    assert_eq!(common::file_names(&folder), sorted_names(&files));
}

#[test]
fn a_server_without_range_support_sends_the_whole_file_again() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let (name, bytes) = &files[1];
    server.serve(&format!("mnist/{name}"), bytes, Behaviour::CutShortNoRange(1));
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");

    fetch::fetch(&file_plan(&files, vec![server.url("mnist")]), &folder, &options(2)).unwrap();
    assert_eq!(&std::fs::read(folder.join(name)).unwrap(), bytes);
    let requests = server.requests_for(&format!("mnist/{name}"));
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].range_start.is_some(),
        "the second request asked for the rest"
    );
    assert_eq!(common::file_names(&folder), sorted_names(&files));
}

#[test]
fn a_complete_partial_file_left_by_an_earlier_run_is_verified_and_put_in_place() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let (name, bytes) = &files[3];
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(partial_path(&folder.join(name)), bytes).unwrap();

    let report = fetch::fetch(&file_plan(&files[3..], vec![server.url("mnist")]), &folder, &options(1)).unwrap();
    assert_eq!(report.bytes_downloaded, 0);
    assert_eq!(&std::fs::read(folder.join(name)).unwrap(), bytes);
    assert_eq!(common::file_names(&folder), std::slice::from_ref(name));
}

#[test]
fn the_next_mirror_is_tried_when_one_lacks_the_file() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("gone"), server.url("mnist")]);

    fetch::fetch(&plan, &folder, &options(3)).unwrap();
    assert_eq!(common::file_names(&folder), sorted_names(&files));
    // A missing file is not asked for again at the same address.
    assert_eq!(server.requests_for(&format!("gone/{}", files[0].0)).len(), 1);

    let nowhere = file_plan(&files, vec![server.url("gone")]);
    let err = fetch::fetch(&nowhere, &root.path().join("other"), &options(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 404") && err.contains(&server.url("gone")), "{err}");
}

/// CIFAR-10 batch files: a full-size test batch (the loader wants exactly 10000 records) and
/// five small training batches, with their paths in the archive.
fn cifar_batches() -> Vec<(String, String, Vec<u8>)> {
    let batch = |records: usize, seed: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(records * 3073);
        for i in 0..records {
            bytes.push((i % 10) as u8);
            bytes.extend(std::iter::repeat_n(((i + seed) % 251) as u8, 3072));
        }
        bytes
    };
    let mut batches: Vec<(String, String, Vec<u8>)> = (1..=5)
        .map(|k| {
            let file = format!("data_batch_{k}.bin");
            (format!("cifar-10-batches-bin/{file}"), file, batch(3, k))
        })
        .collect();
    batches.push((
        "cifar-10-batches-bin/test_batch.bin".to_string(),
        "test_batch.bin".to_string(),
        batch(10_000, 0),
    ));
    batches
}

/// A `.tar.gz` archive holding `batches` (and a file that is not extracted).
fn tar_gz(batches: &[(String, String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut add = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes).unwrap();
    };
    add("cifar-10-batches-bin/readme.html", b"<html></html>");
    for (path, _, bytes) in batches {
        add(path, bytes);
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A plan for the CIFAR-10 archive at `base` with the given archive checksum.
fn cifar_plan(batches: &[(String, String, Vec<u8>)], base: String, checksum: Option<Checksum>) -> Plan {
    Plan {
        base_urls: vec![base],
        items: vec![Item::Archive {
            name: "cifar-10-binary.tar.gz".to_string(),
            checksum,
            members: batches
                .iter()
                .map(|(path, file, bytes)| Member {
                    path: path.clone(),
                    file: file.clone(),
                    sha256: sha256_hex(bytes),
                })
                .collect(),
        }],
    }
}

#[test]
fn the_cifar10_archive_is_verified_extracted_and_deleted() {
    let server = Server::start();
    let batches = cifar_batches();
    let archive = tar_gz(&batches);
    let md5 = Checksum::Md5(String::new()).digest_of(&archive[..]).unwrap();
    server.serve("cifar/cifar-10-binary.tar.gz", &archive, Behaviour::CutShort(1));
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("cifar10");
    let plan = cifar_plan(&batches, server.url("cifar"), Some(Checksum::Md5(md5)));

    let report = fetch::fetch(&plan, &folder, &options(2)).unwrap();
    assert_eq!(report.written.len(), 6);
    let mut expected: Vec<String> = batches.iter().map(|(_, f, _)| f.clone()).collect();
    expected.sort();
    assert_eq!(
        common::file_names(&folder),
        expected,
        "the batches only: archive deleted, readme not taken"
    );
    let test = data::load(DatasetName::Cifar10, root.path(), Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(&test.labels[..3], &[0, 1, 2]);
    assert_eq!(test.pixels[3072], 1);

    let before = server.request_count();
    let again = fetch::fetch(&plan, &folder, &options(1)).unwrap();
    assert_eq!((again.written.len(), again.present.len()), (0, 6));
    assert_eq!(server.request_count(), before);
}

#[test]
fn a_bad_cifar10_archive_is_deleted_with_the_checksums_named() {
    let server = Server::start();
    let batches = cifar_batches();
    let archive = tar_gz(&batches);
    server.serve("cifar/cifar-10-binary.tar.gz", &archive, Behaviour::Normal);
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("cifar10");

    // The whole archive against a wrong MD5.
    let wrong = "0123456789abcdef0123456789abcdef".to_string();
    let plan = cifar_plan(&batches, server.url("cifar"), Some(Checksum::Md5(wrong.clone())));
    let text = fetch::fetch(&plan, &folder, &options(1)).unwrap_err().to_string();
    assert!(
        text.contains("MD5") && text.contains(&wrong) && text.contains("cifar-10-binary.tar.gz"),
        "{text}"
    );
    assert!(
        common::file_names(&folder).is_empty(),
        "{:?}",
        common::file_names(&folder)
    );

    // One batch in the archive against a wrong SHA-256.
    let mut plan = cifar_plan(&batches, server.url("cifar"), None);
    let Item::Archive { members, .. } = &mut plan.items[0] else {
        unreachable!()
    };
    members[5].sha256 = "ab".repeat(32);
    let text = fetch::fetch(&plan, &folder, &options(1)).unwrap_err().to_string();
    assert!(
        text.contains("test_batch.bin in the archive") && text.contains(&"ab".repeat(32)),
        "{text}"
    );
    assert!(text.contains(&sha256_hex(&batches[5].2)), "{text}");
    assert!(!folder.join("test_batch.bin").exists());
    assert!(!partial_path(&folder.join("cifar-10-binary.tar.gz")).exists());
}

#[test]
fn a_gzipped_batch_the_loader_reads_first_counts_when_intact_and_is_named_when_not() {
    let server = Server::start();
    let batches = cifar_batches();
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("cifar10");
    std::fs::create_dir_all(&folder).unwrap();
    for (_, file, bytes) in &batches {
        std::fs::write(folder.join(format!("{file}.gz")), gzip(bytes)).unwrap();
    }
    let plan = cifar_plan(&batches, server.url("cifar"), None);
    let report = fetch::fetch(&plan, &folder, &options(1)).unwrap();
    assert_eq!(report.present.len(), 6);
    assert_eq!(server.request_count(), 0);

    let bad = folder.join("data_batch_2.bin.gz");
    std::fs::write(&bad, gzip(b"something else")).unwrap();
    let text = fetch::fetch(&plan, &folder, &options(1)).unwrap_err().to_string();
    assert!(
        text.contains(&*bad.to_string_lossy()) && text.contains("remove it"),
        "{text}"
    );
    assert_eq!(server.request_count(), 0);
}

#[test]
fn missing_data_errors_name_the_fetch_command() {
    let root = tempfile::tempdir().unwrap();
    for dataset in [DatasetName::Mnist, DatasetName::Cifar10] {
        let err = data::load(dataset, root.path(), Split::Test).unwrap_err().to_string();
        let command = format!(
            "anu data fetch --dataset {dataset} --data-dir {}",
            root.path().display()
        );
        assert!(err.contains(&command), "{err}");
    }
}

/// Runs `anu` with `args` and extra environment; returns whether it succeeded and its stderr.
fn anu(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anu"));
    command.args(args).env_remove("ANU_DATA");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_command_uses_the_real_checksums_and_the_addresses_it_is_given() {
    // The server's tiny MNIST is not the real one: the command must refuse it by checksum.
    let server = Server::start();
    serve_mnist(&server);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_string_lossy().into_owned();
    let (real_name, real_sha) = fetch::MNIST_FILES[0];
    let env = [(fetch::MNIST_URL_ENV, server.url("mnist"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (ok, stderr) = anu(
        &["data", "fetch", "--dataset", "mnist", "--data-dir", &dir, "--quiet"],
        &env,
    );
    assert!(!ok);
    let url = format!("{}{real_name}", server.url("mnist"));
    assert!(stderr.contains(&url) && stderr.contains(real_sha), "{stderr}");
    assert!(common::file_names(&root.path().join("mnist")).is_empty());

    // The same through --url, and through --fetch on a command that needs the data.
    let (ok, stderr) = anu(
        &[
            "data",
            "fetch",
            "--dataset",
            "mnist",
            "--data-dir",
            &dir,
            "--url",
            &server.url("mnist"),
        ],
        &[],
    );
    assert!(!ok && stderr.contains(&url) && stderr.contains(real_sha), "{stderr}");
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/mnist-cnn.safetensors");
    let model = model.to_string_lossy();
    let (ok, stderr) = anu(&["eval", "--data-dir", &dir, "--model-file", &model, "--fetch"], &env);
    assert!(!ok && stderr.contains(&url) && stderr.contains(real_sha), "{stderr}");

    // Without --fetch nothing is downloaded and the error says how to get the data.
    let before = server.request_count();
    let (ok, stderr) = anu(&["eval", "--data-dir", &dir, "--model-file", &model], &env);
    assert!(
        !ok && stderr.contains("anu data fetch --dataset mnist --data-dir"),
        "{stderr}"
    );
    assert_eq!(server.request_count(), before);

    let (ok, stderr) = anu(
        &["data", "fetch", "--dataset", "imagenet-sample", "--data-dir", &dir],
        &[],
    );
    assert!(!ok && stderr.contains("no public download"), "{stderr}");
}

#[test]
fn a_second_fetch_into_the_same_folder_waits_for_the_first() {
    let server = Server::start();
    let files = serve_mnist(&server);
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("mnist")]);

    // Another download holds the folder.
    let held = anu::fsutil::lock_folder(&folder, || panic!("the folder was free")).unwrap();
    let waiter = {
        let (plan, folder) = (plan.clone(), folder.clone());
        std::thread::spawn(move || fetch::fetch(&plan, &folder, &options(1)))
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(!waiter.is_finished(), "the second fetch did not wait");
    assert_eq!(
        server.request_count(),
        0,
        "nothing is downloaded while the folder is held"
    );

    drop(held);
    let report = waiter.join().unwrap().unwrap();
    assert_eq!(report.written.len(), 4);
    assert_eq!(common::file_names(&folder), sorted_names(&files));
}

#[test]
fn an_endless_body_is_cut_off_and_deleted_not_kept_for_later() {
    let server = Server::start();
    let files = mnist_files(3);
    for (name, bytes) in &files {
        server.serve(&format!("mnist/{name}"), bytes, Behaviour::Endless);
    }
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("mnist")]);
    let capped = FetchOptions {
        max_bytes: 1 << 20,
        ..options(2)
    };
    let err = fetch::fetch(&plan, &folder, &capped).unwrap_err().to_string();
    assert!(
        err.contains("more than 1048576 bytes") && err.contains("deleted"),
        "{err}"
    );
    assert!(!err.contains("continues from there"), "{err}");
    assert!(
        common::file_names(&folder).is_empty(),
        "{:?}",
        common::file_names(&folder)
    );
}

#[test]
fn a_trickling_server_is_given_up_on_with_a_clear_message() {
    let server = Server::start();
    let files = mnist_files(3);
    for (name, bytes) in &files {
        server.serve(&format!("mnist/{name}"), bytes, Behaviour::Trickle);
    }
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("mnist");
    let plan = file_plan(&files, vec![server.url("mnist")]);
    // 10 bytes/s arrive, 1000 are asked for; a read never waits longer than its timeout.
    let slow = FetchOptions {
        min_rate: 1000,
        rate_window: Duration::from_millis(500),
        ..options(1)
    };
    let start = std::time::Instant::now();
    let err = fetch::fetch(&plan, &folder, &slow).unwrap_err().to_string();
    assert!(err.contains("slower than the 1000 bytes/s accepted"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}
