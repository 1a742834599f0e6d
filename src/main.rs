/// A list page allocates and frees many small strings and one large body; glibc's
/// allocator spent a fifth of the service's time on that, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` (its options have no named constants in the bindings).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc 3 keeps freed memory for a second before it gives it back to the system.
/// An import's four threads each free several chunks' rows a second, so that second
/// held some 40 MB more at the peak (a 100,000-row import: about 160 MB instead of
/// 120; a million: 172 instead of 149). 10 ms, mimalloc 2's delay, keeps the reuse
/// within a request and gives the rest back. `MIMALLOC_PURGE_DELAY` still decides
/// when it is set.
fn give_back_freed_memory_sooner() {
    // SAFETY: sets a default before any other thread exists (the function is not
    // thread-safe); mimalloc reads it when it next purges.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 10) };
}

fn main() -> std::process::ExitCode {
    give_back_freed_memory_sooner();
    match custclass::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custclass: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // SAFETY: reads and sets options; this test is the only one in the binary.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(super::PURGE_DELAY), 1000, "mimalloc 3's purge delay, unset, is a second");
            super::give_back_freed_memory_sooner();
            assert_eq!(libmimalloc_sys::mi_option_get(super::PURGE_DELAY), 10);
        }
    }
}
