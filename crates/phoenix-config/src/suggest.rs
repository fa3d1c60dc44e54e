//! "Did you mean ...?" suggestions.

/// The candidate closest to `word`, if it is close enough to be a plausible typo: equal ignoring
/// case, `-`/`_` and spaces, or within an edit distance of about a third of its length.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if fold(c) == folded { 0 } else { edit_distance(&folded, &fold(c)) };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (word.chars().count() / 3).max(1);
    best.filter(|&(d, _)| d <= limit).map(|(_, c)| c)
}

/// How far `candidate` is from `word`, as [`closest`] counts it (case, `-`, `_` and spaces aside).
pub fn distance(word: &str, candidate: &str) -> usize {
    edit_distance(&fold(word), &fold(candidate))
}

fn fold(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect()
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
