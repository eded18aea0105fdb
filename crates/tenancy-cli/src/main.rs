//! The `tenancy` command (not built yet: it lands with the CLI issue).

fn main() {
    eprintln!("tenancy: the command line lands with its issue; nothing to run yet");
    std::process::exit(2);
}
