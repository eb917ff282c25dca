//! The `anu` command-line tool.

#![deny(unsafe_code)]

mod cli;

#[allow(unsafe_code)] // the one call before any thread starts, below
fn main() {
    // SAFETY: first thing in `main`, before any thread is started.
    unsafe { anu::device::default_burn_device_to_cpu() };
    // Attack iterations allocate and free buffers of a few megabytes each; keep them for reuse
    // instead of returning them to the system (see the function's documentation).
    anu::allocator::retain_freed_memory();
    if let Err(e) = cli::main() {
        eprintln!("error: {}", message(&e));
        std::process::exit(1);
    }
}

/// The error followed by those of its causes that its message does not already include.
fn message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::from(anu::Error::io("m.safetensors", "cannot read", io));
        assert_eq!(message(&e), "m.safetensors: cannot read: no such file");
        let e = anyhow::Error::from(std::io::Error::other("plain")).context("while loading");
        assert_eq!(message(&e), "while loading: plain");
    }
}
