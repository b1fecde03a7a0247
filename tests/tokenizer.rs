//! Our CLIP tokenizer pipeline against transformers' CLIPTokenizer ids on 200+ strings.
//! The vocabulary is assembled here, at test time, from ../shared/data/bpe_simple_vocab_16e6.txt.gz
//! exactly as openai/CLIP's `SimpleTokenizer` does; nothing built from it is written to the repo.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use groupseg::tokenize::TextTokenizer;

/// GPT-2's reversible byte → printable character table, in CLIP's order (printable bytes first,
/// then the others mapped to 256, 257, …).
fn bytes_to_unicode() -> Vec<char> {
    let printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let others = (0..256u32).filter(|b| !printable.contains(b)).count() as u32;
    printable.into_iter().chain(256..256 + others).map(|c| char::from_u32(c).unwrap()).collect()
}

fn clip_tokenizer() -> TextTokenizer {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/bpe_simple_vocab_16e6.txt.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (the CLIP vocabulary lives in ../shared)", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text).unwrap();
    let merges: Vec<(String, String)> = text
        .split('\n')
        .skip(1)
        .take(49152 - 256 - 2)
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect();
    let chars = bytes_to_unicode();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    tokens.extend(chars.iter().map(|c| format!("{c}</w>")));
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.push("<|startoftext|>".into());
    tokens.push("<|endoftext|>".into());
    assert_eq!(tokens.len(), 49408);
    let vocab: HashMap<String, u32> = tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
    TextTokenizer::clip(vocab, merges, 77).unwrap()
}

#[test]
fn clip_vocabulary_ids_match_transformers() {
    let tok = clip_tokenizer();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_tokenizer_ids.json");
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let pad = cases["pad_id"].as_u64().unwrap() as u32;
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let texts: Vec<String> = cases.iter().map(|c| c["text"].as_str().unwrap().to_owned()).collect();
    let got = tok.encode(&texts).unwrap();
    let mut mismatches = Vec::new();
    for ((case, ids), text) in cases.iter().zip(&got).zip(&texts) {
        let mut want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        want.resize(77, pad);
        if *ids != want {
            mismatches.push(format!("{text:?}\n  got  {ids:?}\n  want {want:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), texts.len(), mismatches.join("\n"));
}

/// Our `tokenizer.json` reader (which skips `tokenizers`' buffering of the model section) against
/// `tokenizers`' own, on a checkpoint's file written by transformers: the same ids for every string
/// of the fixture.
#[test]
fn tokenizer_json_reads_as_tokenizers_reads_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let json = std::fs::read(root.join("tiny-2stage/tokenizer.json")).unwrap();
    let ours = TextTokenizer::from_tokenizer_json(&json, 77).unwrap();
    let mut theirs = tokenizers::Tokenizer::from_bytes(&json).unwrap();
    theirs.with_truncation(Some(tokenizers::TruncationParams { max_length: 77, ..Default::default() })).unwrap();
    let pad = theirs.token_to_id("<|endoftext|>").unwrap();
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("clip_tokenizer_ids.json")).unwrap()).unwrap();
    let texts: Vec<String> =
        cases["cases"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap().to_owned()).collect();
    let got = ours.encode(&texts).unwrap();
    let mut differ = 0;
    for (text, ids) in texts.iter().zip(&got) {
        let mut want = theirs.encode(text.as_str(), true).unwrap().get_ids().to_vec();
        want.resize(77, pad);
        differ += usize::from(*ids != want);
    }
    assert_eq!(differ, 0, "{differ} of {} strings tokenize differently", texts.len());
}
