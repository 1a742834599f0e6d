/// A list page allocates and frees many small strings and one large body; glibc's
/// allocator spent a fifth of the service's time on that, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match custclass::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custclass: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
