//! The fuzzing harness's shared parts (issue 21): bolero, and an input shape that turns a
//! decoder's seed corpus into many nearby texts.
//!
//! The targets live next to the decoders they exercise, as `#[cfg(test)] mod fuzz` in
//! `ketch-api` and `ketch-control`, and run as ordinary `#[test]`s: on stable, bolero's
//! random engine runs each one for `BOLERO_RANDOM_TEST_TIME_MS` (1 s when unset), which is
//! the bounded run of `cargo test`; raise it (or `BOLERO_RANDOM_ITERATIONS`) for a longer
//! one, or run a target under libFuzzer with `cargo bolero test` on nightly (README.md).
//! This crate is a dev-dependency only: nothing of it is linked into the ketch binary.
//!
//! Why seeds and edits rather than random bytes: random text almost never gets past a
//! YAML or JSON parser, so the typed decoders and admission behind it would go untested.
//! An [`Edits`] picks a valid seed (a manifest, a selector, a raft entry) and applies a few
//! byte-level edits and dictionary insertions to it, so most inputs parse and fail (or pass)
//! somewhere deeper. Under libFuzzer the same edit list is what coverage guidance mutates.

pub use bolero;
pub use bolero::check;

/// One edit of a seed text: `op` chooses the operation, `at` the position (taken modulo the
/// text's length) and `arg` its operand (a dictionary entry, a byte, a length).
pub type Edit = (u8, u16, u16);

/// A seed index and the edits to apply to it: the fuzz input of every text target.
pub type Edits = (u8, Vec<Edit>);

/// Builds one input text from `seeds` and `dict` as `edits` say, at most `cap` bytes. The
/// seed byte's low 5 bits pick the seed (at most 32 are reachable).
///
/// Operations: insert a dictionary entry, delete a short range, overwrite a byte, duplicate
/// a range in place (nesting, repetition), insert a raw byte, splice in a range of another
/// seed. A seed index past the seeds starts from the empty text.
pub fn build(seeds: &[&[u8]], dict: &[&[u8]], (seed, edits): &Edits, cap: usize) -> Vec<u8> {
    let index = usize::from(seed & 31);
    let mut text: Vec<u8> = seeds
        .get(index)
        .or_else(|| seeds.get(index % (seeds.len() + 1)))
        .map(|s| s.to_vec())
        .unwrap_or_default();
    // The seed byte's top bits bound how many edits apply, mostly a few: random edit lists
    // are long, and a text edited forty times rarely parses, so most inputs stay near a seed.
    let count = [1, 1, 2, 2, 3, 4, 8, 32][usize::from(seed >> 5)];
    for &(op, at, arg) in edits.iter().take(count) {
        let at = usize::from(at) % (text.len() + 1);
        let arg_usize = usize::from(arg);
        match op % 6 {
            0 if !dict.is_empty() => {
                let word = dict[arg_usize % dict.len()];
                text.splice(at..at, word.iter().copied());
            }
            1 => {
                let end = (at + 1 + arg_usize % 16).min(text.len());
                text.drain(at..end);
            }
            2 if at < text.len() => text[at] = arg as u8,
            3 => {
                let end = (at + 1 + arg_usize % 64).min(text.len());
                let copy = text[at..end].to_vec();
                text.splice(at..at, copy);
            }
            4 => text.insert(at, arg as u8),
            _ if !seeds.is_empty() => {
                let other = seeds[arg_usize % seeds.len()];
                let from = usize::from(arg >> 4) % (other.len() + 1);
                let end = (from + 1 + usize::from(op >> 3)).min(other.len());
                text.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
        if text.len() > cap {
            text.truncate(cap);
        }
    }
    text
}

/// [`build`], as text: invalid UTF-8 is replaced, as the decoders only ever see `&str`
/// (the API server refuses a body that is not UTF-8 before parsing it).
pub fn build_text(seeds: &[&str], dict: &[&str], edits: &Edits, cap: usize) -> String {
    let seeds: Vec<&[u8]> = seeds.iter().map(|s| s.as_bytes()).collect();
    let dict: Vec<&[u8]> = dict.iter().map(|s| s.as_bytes()).collect();
    String::from_utf8_lossy(&build(&seeds, &dict, edits, cap)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_edits_give_the_seed_and_a_seed_index_past_the_end_wraps_or_starts_empty() {
        let seeds: &[&[u8]] = &[b"abc", b"xyz"];
        assert_eq!(build(seeds, &[], &(1, vec![]), 100), b"xyz");
        assert_eq!(build(seeds, &[], &(2, vec![]), 100), b"");
        assert_eq!(build(seeds, &[], &(3, vec![]), 100), b"abc");
    }

    #[test]
    fn edits_insert_delete_and_stay_within_the_cap() {
        let seeds: &[&[u8]] = &[b"abc"];
        let dict: &[&[u8]] = &[b"--"];
        assert_eq!(build(seeds, dict, &(0, vec![(0, 1, 0)]), 100), b"a--bc");
        assert_eq!(build(seeds, dict, &(0, vec![(1, 0, 0)]), 100), b"bc");
        assert_eq!(build(seeds, dict, &(0, vec![(1, 0, 0); 2]), 100), b"bc");
        let grown = build(seeds, dict, &(0xe0, vec![(3, 0, 63); 20]), 10);
        assert_eq!(grown.len(), 10);
    }
}
