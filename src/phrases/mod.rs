//! A caption into the phrases to ground, with no model: a rule-based noun-phrase chunker.
//!
//! "a man riding a brown horse next to a red car" → "a man", "a brown horse", "a red car". A phrase
//! is a run of words (determiners, numbers, adjectives, nouns) that prepositions, verbs,
//! conjunctions, pronouns and punctuation end. GLIP's prompt style ("horse. red car. person.") keeps
//! each short dot-separated part whole.

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

/// Verbs a caption uses, in the forms it uses them; words ending in "-ing" are verbs too unless
/// listed in [`ING_NOUNS`].
const VERBS: &[&str] = &[
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "does", "do", "did", "can",
    "could", "will", "would", "may", "might", "must", "should", "sit", "sits", "sat", "stand", "stands", "stood",
    "hold", "holds", "held", "ride", "rides", "rode", "eat", "eats", "ate", "look", "looks", "looked", "walk",
    "walks", "walked", "run", "runs", "ran", "lie", "lies", "lay", "lays", "play", "plays", "played", "sleep",
    "sleeps", "slept", "fly", "flies", "flew", "carry", "carries", "carried", "wear", "wears", "wore", "jump",
    "jumps", "jumped", "swim", "swims", "swam", "drive", "drives", "drove", "park", "parks", "parked", "grow",
    "grows", "grew", "hang", "hangs", "hung", "lean", "leans", "leaned", "rest", "rests", "rested", "cross",
    "crosses", "crossed", "chase", "chases", "chased", "watch", "watches", "watched", "pull", "pulls", "pulled",
    "push", "pushes", "pushed", "throw", "throws", "threw", "catch", "catches", "caught", "kick", "kicks",
    "kicked", "cover", "covers", "covered", "fill", "fills", "filled", "face", "faces", "faced", "wait", "waits",
    "waited", "surround", "surrounds", "surrounded", "show", "shows", "showed", "shown", "contain", "contains",
    "seen", "sees", "see", "saw", "read", "reads", "make", "makes", "made", "take", "takes", "took", "taken",
    "go", "goes", "went", "gone", "come", "comes", "came", "get", "gets", "got", "give", "gives", "gave",
    "feed", "feeds", "fed", "hit", "hits", "float", "floats", "floated", "stare", "stares", "stared", "perch",
    "perches", "perched", "fall", "falls", "fell", "shine", "shines", "shone", "graze", "grazes", "grazed",
    "land", "lands", "landed", "climb", "climbs", "climbed", "hug", "hugs", "hugged", "kiss", "kisses",
    "kissed", "talk", "talks", "talked", "smile", "smiles", "smiled", "cut", "cuts", "pose", "poses", "posed",
    "placed", "filled", "stacked", "topped", "made", "seated", "dressed", "painted", "stuffed", "loaded",
    "wrapped", "attached", "mounted", "shaped", "colored", "coloured", "set", "sets", "dance", "dances", "danced",
    "sing", "sings", "sang", "point", "points", "pointed", "reach", "reaches", "reached", "bite", "bites", "lick",
    "licks", "sniff", "sniffs", "touch", "touches", "touched", "turn", "turns", "turned", "move", "moves", "moved",
    "write", "writes", "wrote", "cook", "cooks", "cooked", "drink", "drinks", "drank", "smell", "smells", "wash",
    "washes", "washed", "help", "helps", "helped", "build", "builds", "built", "fix", "fixes", "fixed", "serve",
    "serves", "served", "enter", "enters", "entered", "bring", "brings", "brought", "use", "uses", "used", "need",
    "needs", "want", "wants", "love", "loves", "appear", "appears", "seem", "seems", "become", "becomes",
    "remain", "remains", "lead", "leads", "follow", "follows", "meet", "meets", "join", "joins", "share",
    "shares", "sell", "sells", "sold", "buy", "buys", "bought", "hide", "hides", "stretch", "stretches", "bend",
    "bends", "kneel", "kneels", "dive", "dives", "skate", "skates", "glide", "glides", "sail", "sails", "slide",
    "slides", "balance", "balances", "try", "tries", "tried", "prepare", "prepares", "prepared", "sleep",
];

/// Words ending in "-ing" that are nouns, not verbs.
const ING_NOUNS: &[&str] = &[
    "building", "buildings", "ceiling", "ceilings", "painting", "paintings", "clothing", "king", "kings", "ring",
    "rings", "thing", "things", "string", "strings", "wing", "wings", "morning", "evening", "swing", "swings",
    "spring", "railing", "railings", "pudding", "stuffing", "icing", "frosting", "wedding", "bedding", "sibling",
    "siblings", "duckling", "ducklings", "seedling", "sling", "awning", "awnings", "lightning", "dumpling",
    "dumplings", "earring", "earrings", "stocking", "stockings", "toppings", "ping",
];

/// Adjectives that name no object on their own: a phrase of only these is dropped ("the car is red"
/// grounds "the car", not "red").
const ADJECTIVES: &[&str] = &[
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey", "gray",
    "golden", "silver", "dark", "light", "bright", "big", "small", "large", "little", "tall", "short", "long",
    "old", "young", "new", "wet", "dry", "empty", "full", "open", "closed", "happy", "sad", "clean", "dirty",
    "wooden", "metal", "round", "square", "many", "several", "few", "other", "very", "too", "also", "together",
    "alone", "close", "far", "away", "each", "all", "both", "only", "just", "not", "still",
];

/// Where a phrase stops: this word ends it and is not part of it. `after_modifier`: the word
/// before it in the phrase is a determiner or an adjective, which makes a verb form a noun or an
/// adjective ("a green cross", "the running man").
fn ends_phrase(word: &str, after_modifier: bool) -> bool {
    let w = lower(word);
    let w = w.as_str();
    if PREPOSITIONS.contains(&w) || CONJUNCTIONS.contains(&w) || PRONOUNS.contains(&w) {
        return true;
    }
    if after_modifier {
        return false;
    }
    VERBS.contains(&w) || (w.len() > 4 && w.ends_with("ing") && !ING_NOUNS.contains(&w))
}

/// Determiners and adjectives modify the word after them.
fn is_modifier(word: &str) -> bool {
    let w = lower(word);
    DETERMINERS.contains(&w.as_str()) || ADJECTIVES.contains(&w.as_str()) || w.parse::<f64>().is_ok()
}

/// Determiners open a phrase: one after other words starts the next phrase ("dogs the cat").
fn opens_phrase(word: &str) -> bool {
    DETERMINERS.contains(&lower(word).as_str())
}

/// The phrases of `caption`, in order, each once per occurrence.
pub fn chunk(caption: &str) -> Vec<Phrase> {
    let parts = sentence_parts(caption);
    // GLIP's prompt style: several short parts ended by dots, with no preposition, conjunction or
    // verb in them, are phrases as they stand ("traffic light. dining table.").
    let prompt_style = parts.len() >= 2
        && parts.iter().all(|&(s, e)| {
            let words: Vec<String> = caption[s..e].split_whitespace().map(lower).collect();
            words.len() <= 4
                && !words.iter().any(|w| {
                    PREPOSITIONS.contains(&w.as_str()) || CONJUNCTIONS.contains(&w.as_str()) || VERBS.contains(&w.as_str())
                })
        });
    let mut out = Vec::new();
    for (s, e) in parts {
        if prompt_style {
            out.push(Phrase { text: caption[s..e].to_owned(), start: s, end: e });
        } else {
            chunk_part(caption, s, e, &mut out);
        }
    }
    out
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
    let mut current: Option<(usize, usize)> = None;
    let flush = |current: &mut Option<(usize, usize)>, out: &mut Vec<Phrase>| {
        if let Some((s, e)) = current.take() {
            let text = &caption[s..e];
            // After a determiner the last word is a noun even if it can be an adjective ("a red
            // square"); without one, adjectives alone name nothing ("the car is red").
            let words: Vec<String> = text.split_whitespace().map(lower).collect();
            let determined = words.len() >= 2 && DETERMINERS.contains(&words[0].as_str());
            let names_something = determined
                || words.iter().any(|w| {
                    !DETERMINERS.contains(&w.as_str()) && !ADJECTIVES.contains(&w.as_str()) && w.chars().any(char::is_alphabetic)
                });
            if names_something {
                out.push(Phrase { text: text.to_owned(), start: s, end: e });
            }
        }
    };
    let mut previous: Option<&str> = None;
    for (ws, we, punct_after) in words(caption, start, end) {
        let word = &caption[ws..we];
        let after_modifier = current.is_some() && previous.is_some_and(is_modifier);
        previous = Some(word);
        if ends_phrase(word, after_modifier) {
            flush(&mut current, out);
        } else {
            if opens_phrase(word) && current.is_some() {
                flush(&mut current, out);
            }
            current = Some(match current {
                Some((s, _)) => (s, we),
                None => (ws, we),
            });
        }
        if punct_after {
            flush(&mut current, out);
        }
    }
    flush(&mut current, out);
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
        assert_eq!(utf16_offset("😀 cat", "😀 ".len()), 3);
    }
}
