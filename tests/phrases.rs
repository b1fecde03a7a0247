//! The rule-based chunker (`groupseg::phrases`) on the hand-written captions of
//! `tests/fixtures/captions.json`: every caption must give exactly its expected phrases, each span
//! pointing at its words in the caption.

mod common;

use groupseg::phrases;

#[test]
fn the_chunker_finds_the_phrases_of_every_written_caption() {
    let path = common::fixture("captions.json");
    let data: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("captions.json")).expect("JSON");
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "at least 60 captions, not {}", cases.len());
    let mut wrong = Vec::new();
    for case in cases {
        let caption = case["caption"].as_str().expect("caption");
        let want: Vec<&str> = case["phrases"].as_array().expect("phrases").iter().map(|p| p.as_str().expect("phrase")).collect();
        let got = phrases::chunk(caption);
        for p in &got {
            assert_eq!(&caption[p.start..p.end], p.text, "the span of {:?} in {caption:?}", p.text);
        }
        let got: Vec<&str> = got.iter().map(|p| p.text.as_str()).collect();
        if got != want {
            wrong.push(format!("{caption:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} captions chunked wrongly:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}
