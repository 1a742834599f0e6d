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

/// mimalloc asks for transparent huge pages on its arena (`MADV_HUGEPAGE`), so that
/// every 2 MiB a thread touches becomes resident whole: measured on MariaDB, 43 MB
/// idle instead of 31, a 100,000-row import's peak 121 MB instead of 77 and a
/// million's 161 instead of 93, with the same time, and point reads and list pages
/// as fast. mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`) is read before `main`, so
/// the service makes the call it would make, unless that variable is set.
#[cfg(target_os = "linux")]
fn keep_memory_in_small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integers and changes only this process's
        // page policy.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() -> std::process::ExitCode {
    give_back_freed_memory_sooner();
    #[cfg(target_os = "linux")]
    keep_memory_in_small_pages();
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
        // SAFETY: reads and sets options; no other test of the binary touches them.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(super::PURGE_DELAY),
                1000,
                "mimalloc 3's purge delay, unset, is a second"
            );
            super::give_back_freed_memory_sooner();
            assert_eq!(libmimalloc_sys::mi_option_get(super::PURGE_DELAY), 10);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_for_the_process() {
        // SAFETY: PR_GET_THP_DISABLE only reads this process's page policy.
        let disabled = || unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            assert_eq!(disabled(), 0, "nothing turned them off before");
        }
        super::keep_memory_in_small_pages();
        assert_eq!(disabled(), i32::from(std::env::var_os("MIMALLOC_ALLOW_THP").is_none()));
    }
}
