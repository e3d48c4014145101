/// HTTP header fields: names are stored lowercase, values as bytes; a name may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name` (case-insensitive) when it is valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .find_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a value for `name`, keeping the existing ones.
    pub fn append(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// All (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_entries(self) -> Vec<(String, Vec<u8>)> {
        self.0
    }
}

impl Headers {
    /// From a host's field list, whose names wasi:http already gives in lowercase (wasmtime
    /// normalizes them); lowercased here only when one is not.
    pub(crate) fn from_lowercase(mut entries: Vec<(String, Vec<u8>)>) -> Self {
        for (n, _) in &mut entries {
            if n.bytes().any(|b| b.is_ascii_uppercase()) {
                n.make_ascii_lowercase();
            }
        }
        Headers(entries)
    }
}

impl From<Vec<(String, Vec<u8>)>> for Headers {
    fn from(entries: Vec<(String, Vec<u8>)>) -> Self {
        let mut h = Headers::new();
        for (n, v) in entries {
            h.append(&n, v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_set_replaces() {
        let mut h = Headers::new();
        h.append("X-Tag", "a");
        h.append("x-tag", "b");
        assert_eq!(h.get_all("X-TAG").count(), 2);
        assert_eq!(h.get("x-tag"), Some("a"));
        h.set("X-Tag", "c");
        assert_eq!(
            h.get_all("x-tag").collect::<Vec<_>>(),
            vec![b"c".as_slice()]
        );
        h.remove("x-TAG");
        assert!(h.is_empty());
    }
}
