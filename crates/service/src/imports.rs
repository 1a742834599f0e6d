//! The imports this process runs, as the HTTP layer (which starts them and reads their
//! progress) and the import watch (`jobs`) share them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rows done of the imports this process is running, fresher than their stored rows
/// while an atomic import's transaction keeps its progress from being written (SQLite).
#[derive(Clone, Default)]
pub struct RunningImports(Arc<Mutex<HashMap<String, u64>>>);

impl RunningImports {
    pub fn set(&self, id: &str, rows_done: u64) {
        self.0.lock().expect("not poisoned").insert(id.to_string(), rows_done);
    }

    pub fn end(&self, id: &str) {
        self.0.lock().expect("not poisoned").remove(id);
    }

    pub fn rows_done(&self, id: &str) -> Option<u64> {
        self.0.lock().expect("not poisoned").get(id).copied()
    }

    /// The imports this process runs now.
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().expect("not poisoned").keys().cloned().collect()
    }
}
