//! Which pooler-named prepared statements a server connection holds: a
//! bounded LRU, so a connection never accumulates more than
//! `max_prepared_statements` (the oldest is closed to make room).

use std::collections::HashMap;
use std::sync::Arc;

/// The prepared statements one server connection has.
#[derive(Debug, Default)]
pub struct ServerStatements {
    names: HashMap<Arc<str>, u64>,
    tick: u64,
}

impl ServerStatements {
    /// True (and marks it recently used) if the server has `name`.
    pub fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.names.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records that `name` is (being) prepared; returns the least recently
    /// used name to close first when that would exceed `capacity`.
    pub fn insert(&mut self, name: Arc<str>, capacity: usize) -> Option<Arc<str>> {
        self.tick += 1;
        let victim = if self.names.len() >= capacity.max(1) && !self.names.contains_key(&name) {
            let oldest = self
                .names
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone());
            if let Some(n) = &oldest {
                self.names.remove(n);
            }
            oldest
        } else {
            None
        };
        self.names.insert(name, self.tick);
        victim
    }

    /// Forgets `name` (its Parse failed, or it was closed).
    pub fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// Forgets everything (after DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.names.clear();
    }

    /// How many statements the server holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the server holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction() {
        let mut s = ServerStatements::default();
        assert_eq!(s.insert("a".into(), 2), None);
        assert_eq!(s.insert("b".into(), 2), None);
        assert!(s.touch("a"));
        assert_eq!(s.insert("c".into(), 2).as_deref(), Some("b"));
        assert!(!s.touch("b"));
        assert!(s.touch("c"));
        assert_eq!(s.len(), 2);
        s.clear();
        assert!(s.is_empty());
    }
}
