fn main() -> std::process::ExitCode {
    match custclass::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custclass: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
