//! Prompts to token ids with the checkpoint's own tokenizer: its `tokenizer.json`, or CLIP's
//! `vocab.json` + `merges.txt` assembled into the same pipeline transformers' `CLIPTokenizer` builds.

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// transformers' `CLIPTokenizer` pre-tokenisation pattern.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// A CLIP-style tokenizer: start and end tokens around the text, padded or truncated to the
/// model's context length.
pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    pad_id: u32,
}

impl TextTokenizer {
    /// From the bytes of a checkpoint's `tokenizer.json`.
    pub fn from_tokenizer_json(json: &[u8], context_length: usize) -> Result<Self> {
        // JSON first, then the tokenizer from the parsed value: `tokenizers` panics on a syntax error
        // inside its `decoder` section when it parses from bytes (found by fuzzing).
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON ({e})")))?;
        Self::new(serde_json::from_value::<Tokenizer>(value).map_err(tok_err)?, context_length)
    }

    /// From CLIP's `vocab.json` and `merges.txt`, built as transformers' `CLIPTokenizer` builds it.
    pub fn from_vocab_merges(vocab_json: &[u8], merges_txt: &str, context_length: usize) -> Result<Self> {
        let vocab: HashMap<String, u32> = serde_json::from_slice(vocab_json)
            .map_err(|e| Error::Tokenizer(format!("vocab.json is not a token → id map: {e}")))?;
        let merges = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| Error::Tokenizer(format!("merges.txt line {l:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::clip(vocab, merges, context_length)
    }

    /// CLIP's BPE pipeline over the given vocabulary and merges.
    pub fn clip(vocab: HashMap<String, u32>, merges: Vec<(String, String)>, context_length: usize) -> Result<Self> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| Error::Tokenizer(format!("the vocabulary has no {t}")));
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(EOS.into())
            .fuse_unk(false)
            .build()
            .map_err(tok_err)?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
            NFC.into(),
            Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")
                .map_err(tok_err)?
                .into(),
            Lowercase.into(),
        ])))
        .map_err(tok_err)?;
        let split = Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(tok_err)?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new((EOS.into(), eos), (BOS.into(), bos)).trim_offsets(false).add_prefix_space(false),
        ));
        tokenizer.add_special_tokens([AddedToken::from(BOS, true), AddedToken::from(EOS, true)]).map_err(tok_err)?;
        Self::new(tokenizer, context_length)
    }

    fn new(mut inner: Tokenizer, context_length: usize) -> Result<Self> {
        let pad_id = inner
            .token_to_id(EOS)
            .ok_or_else(|| Error::Tokenizer(format!("the tokenizer has no {EOS} token")))?;
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: context_length, ..Default::default() }))
            .map_err(tok_err)?;
        inner.with_padding(None);
        Ok(Self { inner, context_length, pad_id })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Ids of each text, with start/end tokens, padded with end-of-text to the context length.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                let enc = self.inner.encode(t.as_str(), true).map_err(tok_err)?;
                let mut ids = enc.get_ids().to_vec();
                ids.resize(self.context_length, self.pad_id);
                Ok(ids)
            })
            .collect()
    }
}
