//! "Did you mean ...?" suggestions.

/// The candidate closest to `word`, if it is close enough to be a plausible typo: equal ignoring
/// case, `-`/`_` and spaces, or within an edit distance of about a third of its length (the
/// optimal string alignment distance: Levenshtein's, with a swap of two neighbours as one edit).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if fold(c) == folded { 0 } else { strsim::osa_distance(&folded, &fold(c)) };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (word.chars().count() / 3).max(1);
    best.filter(|&(d, _)| d <= limit).map(|(_, c)| c)
}

/// How far `candidate` is from `word`, as [`closest`] counts it (case, `-`, `_` and spaces aside).
pub fn distance(word: &str, candidate: &str) -> usize {
    strsim::osa_distance(&fold(word), &fold(candidate))
}

fn fold(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["memory_mb", "swap_mb", "cores", "storage_pool"];
        assert_eq!(closest("memroy_mb", keys), Some("memory_mb"));
        assert_eq!(closest("Memory-MB", keys), Some("memory_mb"));
        assert_eq!(closest("core", keys), Some("cores"));
        assert_eq!(closest("hostname", keys), None);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("Memory-MB", "memory_mb"), 0);
    }
}
