//! A caption into the phrases to ground, with no model: a noun-phrase chunker over a
//! part-of-speech lexicon (`lexicon`).
//!
//! "a man riding a brown horse next to a red car" → "a man", "a brown horse", "a red car". A phrase
//! is a run of words (determiners, numbers, adjectives, nouns) that prepositions, conjunctions,
//! pronouns, verbs and punctuation end. Which words can be verbs, nouns or adjectives, and which
//! they usually are, the lexicon says; the closed classes (determiners, prepositions, conjunctions,
//! pronouns) are listed here. A caption of labels ("horse. red car." in GLIP's prompt style, or one
//! label such as "red square") keeps each label whole.

mod lexicon;

use lexicon::Pos;

/// A phrase of a caption: its words and where they lie.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Phrase {
    /// The words as written ("a brown horse").
    pub text: String,
    /// Byte offsets of the phrase in the caption: `&caption[start..end] == text`.
    pub start: usize,
    pub end: usize,
}

impl Phrase {
    /// What the phrase names, for the text encoder: without its opening determiners ("brown
    /// horse"), so a prompt template reads well around it.
    pub fn label(&self) -> String {
        let words: Vec<&str> = self.text.split_whitespace().collect();
        let skip = words.iter().take_while(|w| DETERMINERS.contains(&lower(w).as_str())).count();
        if skip == words.len() {
            self.text.clone()
        } else {
            words[skip..].join(" ")
        }
    }
}

fn lower(w: &str) -> String {
    w.to_lowercase()
}

const DETERMINERS: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "another", "my", "your",
    "his", "her", "its", "our", "their", "no",
];

const PREPOSITIONS: &[&str] = &[
    "in", "on", "at", "to", "with", "without", "under", "over", "above", "below", "behind", "beside", "besides",
    "near", "by", "of", "from", "into", "onto", "through", "across", "along", "around", "between", "among",
    "against", "inside", "outside", "beneath", "underneath", "toward", "towards", "up", "down", "off", "for",
    "about", "after", "before", "past", "beyond", "within", "upon", "next", "atop", "like", "during", "via",
    "than", "as", "out",
];

const CONJUNCTIONS: &[&str] = &["and", "or", "but", "nor", "while", "whereas", "so", "then", "yet", "because", "if", "when", "where"];

const PRONOUNS: &[&str] = &[
    "i", "you", "he", "she", "it", "we", "they", "me", "him", "us", "them", "who", "whom", "which", "what",
    "there", "here", "itself", "himself", "herself", "themselves", "someone", "something",
];

/// Nouns of place that with "of" make a relation, not an object ("in front of", "to the left of").
const RELATION_NOUNS: &[&str] = &["front", "back", "rear", "left", "right", "top", "bottom", "middle", "center", "centre", "side"];

/// What a word usually is: the closed classes as listed here, then the lexicon; numerals are
/// numbers, and a word the lexicon lacks is a verb if it ends in "-ing", a plural noun if in "-s",
/// else a noun.
fn usually(w: &str) -> Pos {
    if DETERMINERS.contains(&w) {
        Pos::Determiner
    } else if PREPOSITIONS.contains(&w) {
        Pos::Preposition
    } else if CONJUNCTIONS.contains(&w) {
        Pos::Conjunction
    } else if PRONOUNS.contains(&w) {
        Pos::Pronoun
    } else if w.parse::<f64>().is_ok() {
        Pos::Number
    } else if let Some(found) = lexicon::lookup(w) {
        found.usually()
    } else if w.len() > 4 && w.ends_with("ing") {
        Pos::Gerund
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        Pos::PluralNoun
    } else {
        Pos::Noun
    }
}

/// Whether `w` can be `pos` by the lexicon.
fn can_be(w: &str, pos: Pos) -> bool {
    lexicon::lookup(w).is_some_and(|found| found.can_be(|p| p == pos))
}

/// Whether `w` can name something: a noun by the lexicon, or a word it lacks.
fn can_be_noun(w: &str) -> bool {
    lexicon::lookup(w).is_none_or(|found| found.can_be(Pos::is_noun))
}

/// The phrase being gathered.
#[derive(Clone, Copy)]
struct Open {
    start: usize,
    end: usize,
    /// It came right after a verb ("is red").
    after_verb: bool,
}

/// The word before the one being read, within the sentence.
#[derive(Clone, Copy, Default)]
struct Before {
    /// A determiner, an adjective or a number, which makes the next word part of its phrase even
    /// where it could be a verb ("a green cross", "the running man").
    modifier: bool,
    /// A noun, and of how many.
    noun: Option<Pos>,
    /// A verb, or a word ended by one.
    verb: bool,
}

impl Before {
    fn of(w: &str) -> Self {
        let pos = usually(w);
        Self {
            modifier: matches!(pos, Pos::Determiner | Pos::Adjective | Pos::Number),
            noun: pos.is_noun().then_some(pos),
            verb: pos.is_verb(),
        }
    }
}

/// A closed-class word that ends a phrase and is not part of one.
fn closed_ender(w: &str) -> bool {
    PREPOSITIONS.contains(&w) || CONJUNCTIONS.contains(&w) || PRONOUNS.contains(&w)
}

/// Whether `w` (lower case) is the verb after a phrase. After a noun, by agreement (`in_sentence`):
/// a singular noun takes a third-person form ("the sun sets", "a cat watches"), not a base form ("a
/// teddy bear"); a plural noun takes a base form ("two dogs chase"); either takes an "-ing" or a
/// past form that is usually a verb, or any "-ing" form ("an elephant drinking"). Elsewhere, a
/// word that is usually a verb.
fn is_verb_here(w: &str, before: Before, open: Option<&Open>, in_sentence: bool) -> bool {
    // The lexicon lists rare tags of closed-class words too ("the" as a verb): not here.
    if (open.is_some() && before.modifier) || DETERMINERS.contains(&w) {
        return false;
    }
    let pos = usually(w);
    match before.noun.filter(|_| in_sentence) {
        Some(Pos::PluralNoun) => {
            (pos.is_verb() && pos != Pos::ThirdPersonVerb) || (can_be(w, Pos::Verb) && pos != Pos::PluralNoun)
        }
        Some(_) => {
            matches!(pos, Pos::ThirdPersonVerb | Pos::Gerund | Pos::PastVerb | Pos::Modal)
                || can_be(w, Pos::ThirdPersonVerb)
                || (w.ends_with("ing") && can_be(w, Pos::Gerund))
        }
        None => pos.is_verb(),
    }
}

/// Characters a caption may have: a long paragraph. Grounding encodes each phrase as a label, so
/// the labels' caps (count and length) apply to its phrases as well.
pub const MAX_CAPTION_CHARS: usize = 2000;

/// Refuses a caption over [`MAX_CAPTION_CHARS`], counting no further than the cap; the faces call
/// it before [`chunk`].
pub fn check_caption(caption: &str) -> crate::Result<()> {
    if caption.chars().nth(MAX_CAPTION_CHARS).is_some() {
        let start: String = caption.chars().take(24).collect();
        return Err(crate::Error::InvalidInput(format!(
            "the caption \"{start}…\" is over {MAX_CAPTION_CHARS} characters long; a caption has at most {MAX_CAPTION_CHARS}: ground a few sentences at a time"
        )));
    }
    Ok(())
}

/// The phrases of `caption`, in order, each once per occurrence.
pub fn chunk(caption: &str) -> Vec<Phrase> {
    let parts = sentence_parts(caption);
    // Labels ended by dots (GLIP's prompt style: "traffic light. dining table."), or one label
    // ("red square"): each part is a phrase as it stands.
    let labels = parts.iter().all(|&(s, e)| is_label(caption, s, e));
    let mut out = Vec::new();
    for (s, e) in parts {
        if labels {
            out.push(Phrase { text: caption[s..e].to_owned(), start: s, end: e });
        } else {
            chunk_part(caption, s, e, &mut out);
        }
    }
    out
}

/// A label: at most four words, unbroken by punctuation, with no preposition, conjunction or
/// pronoun, and no word after its first that is usually a verb ("bus stops" is a label, "a train
/// arrives" is not).
fn is_label(caption: &str, start: usize, end: usize) -> bool {
    let words = words(caption, start, end);
    if words.len() > 4 || words.iter().rev().skip(1).any(|&(_, _, punct)| punct) {
        return false;
    }
    let mut before = Before::default();
    let mut open: Option<Open> = None;
    for &(ws, we, _) in &words {
        let w = lower(&caption[ws..we]);
        if closed_ender(&w) || (open.is_some() && is_verb_here(&w, before, open.as_ref(), false)) {
            return false;
        }
        open.get_or_insert(Open { start: ws, end: we, after_verb: false });
        before = Before::of(&w);
    }
    true
}

/// The trimmed, non-empty spans between sentence ends ('.', '!', '?', ';', '\n').
fn sentence_parts(caption: &str) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, ch) in caption.char_indices().chain(std::iter::once((caption.len(), '.'))) {
        if matches!(ch, '.' | '!' | '?' | ';' | '\n') {
            let piece = &caption[start..i];
            let lead = piece.len() - piece.trim_start().len();
            let trimmed = piece.trim();
            if !trimmed.is_empty() {
                parts.push((start + lead, start + lead + trimmed.len()));
            }
            start = i + ch.len_utf8();
        }
    }
    parts
}

/// Chunks `caption[start..end]` (one sentence) into `out`.
fn chunk_part(caption: &str, start: usize, end: usize, out: &mut Vec<Phrase>) {
    // `next`: the word that ended the phrase, if any.
    let flush = |open: &mut Option<Open>, next: Option<&str>, out: &mut Vec<Phrase>| {
        let Some(o) = open.take() else { return };
        let text = &caption[o.start..o.end];
        let words: Vec<String> = text.split_whitespace().map(lower).collect();
        let head = words.last().map_or("", String::as_str);
        // After a determiner the last word is a noun even if it is usually an adjective ("a red
        // square"); without one, a word that is usually an adjective after a verb names nothing
        // ("the car is red"), nor does a word that cannot be a noun.
        let determined = words.len() >= 2 && DETERMINERS.contains(&words[0].as_str());
        let names_something = head.chars().any(char::is_alphabetic)
            && !DETERMINERS.contains(&head)
            && (determined || (can_be_noun(head) && !(o.after_verb && usually(head) == Pos::Adjective)));
        // "in front of", "to the left of": a relation, not an object.
        let relation = next == Some("of") && RELATION_NOUNS.contains(&head);
        if names_something && !relation {
            out.push(Phrase { text: text.to_owned(), start: o.start, end: o.end });
        }
    };
    let mut open: Option<Open> = None;
    let mut before = Before::default();
    for (ws, we, punct_after) in words(caption, start, end) {
        let w = lower(&caption[ws..we]);
        if closed_ender(&w) || is_verb_here(&w, before, open.as_ref(), true) {
            flush(&mut open, Some(&w), out);
            before = Before { verb: !closed_ender(&w), ..Default::default() };
        } else {
            // A determiner opens a new phrase ("dogs the cat").
            if DETERMINERS.contains(&w.as_str()) {
                flush(&mut open, Some(&w), out);
            }
            let after_verb = before.verb;
            let o = open.get_or_insert(Open { start: ws, end: we, after_verb });
            o.end = we;
            before = Before::of(&w);
        }
        if punct_after {
            flush(&mut open, None, out);
            before = Before::default();
        }
    }
    flush(&mut open, None, out);
}

/// The words of `caption[start..end]` as byte spans, without surrounding punctuation (hyphens and
/// apostrophes inside a word stay), each with whether a comma, colon or bracket follows it.
fn words(caption: &str, start: usize, end: usize) -> Vec<(usize, usize, bool)> {
    let text = &caption[start..end];
    let mut out = Vec::new();
    let mut i = 0;
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '\'' || c == '’';
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    while i < chars.len() {
        if !is_word(chars[i].1) {
            if matches!(chars[i].1, ',' | ':' | '(' | ')' | '"' | '“' | '”') {
                if let Some(last) = out.last_mut() {
                    let (_, _, p): &mut (usize, usize, bool) = last;
                    *p = true;
                }
            }
            i += 1;
            continue;
        }
        let s = chars[i].0;
        while i < chars.len() && is_word(chars[i].1) {
            i += 1;
        }
        let e = if i < chars.len() { chars[i].0 } else { text.len() };
        // Apostrophes and hyphens at a word's edges are quotes or dashes, not part of it.
        let word = &text[s..e];
        let trimmed_start = word.len() - word.trim_start_matches(['-', '\'', '’']).len();
        let trimmed = word.trim_matches(['-', '\'', '’']);
        if !trimmed.is_empty() {
            out.push((start + s + trimmed_start, start + s + trimmed_start + trimmed.len(), false));
        }
    }
    out
}

/// `caption`'s byte offset `at` as an offset in characters (Unicode scalar values, Python's `str`
/// indices) or in UTF-16 code units (JavaScript's).
pub fn char_offset(caption: &str, at: usize) -> usize {
    caption[..at].chars().count()
}

pub fn utf16_offset(caption: &str, at: usize) -> usize {
    caption[..at].encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(caption: &str) -> Vec<String> {
        chunk(caption).into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn the_issue_caption_and_glip_prompts() {
        assert_eq!(texts("a man riding a brown horse next to a red car"), ["a man", "a brown horse", "a red car"]);
        assert_eq!(texts("horse. red car."), ["horse", "red car"]);
        assert_eq!(texts("dining table. traffic light. person"), ["dining table", "traffic light", "person"]);
    }

    #[test]
    fn spans_point_into_the_caption() {
        let caption = "Ein café: a naïve cat, and the dog’s bowl";
        for p in chunk(caption) {
            assert_eq!(&caption[p.start..p.end], p.text);
        }
        let p = &chunk(caption)[1];
        assert_eq!((p.text.as_str(), char_offset(caption, p.start)), ("a naïve cat", 10));
        assert_eq!(chunk("a brown horse")[0].label(), "brown horse");
        // A determiner alone names nothing, though the lexicon lists "the" as a noun too.
        assert!(chunk("is on the").is_empty());
        assert_eq!(utf16_offset("😀 cat", "😀 ".len()), 3);
    }
}
