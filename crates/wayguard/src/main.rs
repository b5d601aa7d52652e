//! The `wayguard` binary.

fn main() -> std::process::ExitCode {
    wayguard::cli::main()
}
