//! Which parts of speech an English word can be, most frequent first: wink-lexicon's curated
//! words (`lexicon.txt`, written by `tools/lexicon/build.mjs`), and for a word it lacks, what its
//! inflection says when its stem is there ("grazes" is not listed, "graze" is).

use std::collections::HashMap;
use std::sync::OnceLock;

/// A part of speech, as coarse as the phrase finder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pos {
    Noun,
    PluralNoun,
    /// A verb's base form ("sit"), which follows a plural noun as its verb but not a singular one.
    Verb,
    /// A verb in the third person singular ("sits"), which follows a singular noun as its verb.
    ThirdPersonVerb,
    /// A verb's "-ing" form ("sitting").
    Gerund,
    /// A verb's past forms ("sat").
    PastVerb,
    Modal,
    Adjective,
    Adverb,
    Determiner,
    Preposition,
    Conjunction,
    Pronoun,
    Number,
    Other,
}

impl Pos {
    fn from_letter(c: char) -> Self {
        match c {
            'n' => Self::Noun,
            's' => Self::PluralNoun,
            'v' => Self::Verb,
            'z' => Self::ThirdPersonVerb,
            'g' => Self::Gerund,
            'e' => Self::PastVerb,
            'k' => Self::Modal,
            'j' => Self::Adjective,
            'r' => Self::Adverb,
            'd' => Self::Determiner,
            'p' => Self::Preposition,
            'c' => Self::Conjunction,
            'o' => Self::Pronoun,
            'm' => Self::Number,
            _ => Self::Other,
        }
    }

    pub fn is_noun(self) -> bool {
        matches!(self, Self::Noun | Self::PluralNoun)
    }

    pub fn is_verb(self) -> bool {
        matches!(self, Self::Verb | Self::ThirdPersonVerb | Self::Gerund | Self::PastVerb | Self::Modal)
    }
}

/// What a word can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    /// The parts of speech in order of frequency (`len` of them).
    pos: [Pos; 8],
    len: u8,
}

impl Word {
    fn new(pos: &[Pos]) -> Self {
        let mut out = Self { pos: [Pos::Other; 8], len: 0 };
        for &p in pos.iter().take(8) {
            out.pos[out.len as usize] = p;
            out.len += 1;
        }
        out
    }

    /// Its most frequent part of speech.
    pub fn usually(&self) -> Pos {
        self.pos[0]
    }

    pub fn can_be(&self, test: impl Fn(Pos) -> bool) -> bool {
        self.pos[..self.len as usize].iter().any(|&p| test(p))
    }
}

const TEXT: &str = include_str!("lexicon.txt");

fn table() -> &'static HashMap<&'static str, Word> {
    static TABLE: OnceLock<HashMap<&'static str, Word>> = OnceLock::new();
    TABLE.get_or_init(|| {
        TEXT.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (word, classes) = l.split_once(' ')?;
                let pos: Vec<Pos> = classes.chars().map(Pos::from_letter).collect();
                Some((word, Word::new(&pos)))
            })
            .collect()
    })
}

/// `word` (lower case) as the lexicon lists it.
fn listed(word: &str) -> Option<Word> {
    table().get(word).copied()
}

/// Whether the lexicon lists `stem` as a verb.
fn verb_stem(stem: &str) -> bool {
    listed(stem).is_some_and(|w| w.can_be(Pos::is_verb))
}

/// The stems an inflected form may come from: the suffix off, with a dropped "e" back, with a
/// doubled consonant undone ("sitting" → "sit").
fn stems<'a>(word: &'a str, suffix: &str) -> Vec<std::borrow::Cow<'a, str>> {
    let Some(stem) = word.strip_suffix(suffix) else { return Vec::new() };
    let mut out = vec![std::borrow::Cow::Borrowed(stem), std::borrow::Cow::Owned(format!("{stem}e"))];
    let b = stem.as_bytes();
    if b.len() >= 2 && b[b.len() - 1] == b[b.len() - 2] {
        out.push(std::borrow::Cow::Borrowed(&stem[..stem.len() - 1]));
    }
    out
}

/// What `word` (any case) can be; `None` for a word neither listed nor an inflection of a listed
/// verb, which the phrase finder takes for a noun (names are most of what a lexicon lacks).
pub fn lookup(word: &str) -> Option<Word> {
    let w = word.to_lowercase();
    if let Some(found) = listed(&w) {
        return Some(found);
    }
    // Unlisted inflections of listed verbs: "-ing" and "-ed" forms are verbs; an "-s" form is a
    // plural noun or a verb, as its stem usually is.
    if stems(&w, "ing").iter().any(|s| verb_stem(s)) {
        return Some(Word::new(&[Pos::Gerund, Pos::Adjective]));
    }
    if stems(&w, "ed").iter().any(|s| verb_stem(s)) {
        return Some(Word::new(&[Pos::PastVerb, Pos::Adjective]));
    }
    if !w.ends_with("ss") {
        let stem = w.strip_suffix("es").filter(|s| verb_stem(s)).or_else(|| w.strip_suffix('s'));
        if let Some(found) = stem.and_then(listed).filter(|s| s.can_be(Pos::is_verb)) {
            return Some(if found.usually().is_verb() {
                Word::new(&[Pos::ThirdPersonVerb, Pos::PluralNoun])
            } else {
                Word::new(&[Pos::PluralNoun, Pos::ThirdPersonVerb])
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_words_come_with_their_most_frequent_part_of_speech_first() {
        assert_eq!(lookup("park").map(|w| w.usually()), Some(Pos::Noun));
        assert!(lookup("park").unwrap().can_be(Pos::is_verb));
        assert_eq!(lookup("Square").map(|w| w.usually()), Some(Pos::Noun));
        assert_eq!(lookup("red").map(|w| w.usually()), Some(Pos::Adjective));
        assert_eq!(lookup("arrives").map(|w| w.usually()), Some(Pos::ThirdPersonVerb));
        assert!(table().len() > 13_000, "{} words", table().len());
    }

    #[test]
    fn unlisted_words_are_read_from_their_listed_stems() {
        assert!(lookup("xylophone").is_none());
        // "bolster" is listed, its inflections are not.
        assert!(listed("bolstering").is_none() && listed("bolsters").is_none());
        assert_eq!(lookup("bolstering").map(|w| w.usually()), Some(Pos::Gerund));
        assert_eq!(lookup("bolstered").map(|w| w.usually()), Some(Pos::PastVerb));
        assert_eq!(lookup("bolsters").map(|w| w.usually()), Some(Pos::ThirdPersonVerb));
        assert_eq!(stems("sitting", "ing"), ["sitt", "sitte", "sit"]);
    }
}
