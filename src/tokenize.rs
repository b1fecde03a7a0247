//! Prompts to token ids with the checkpoint's own tokenizer: its `tokenizer.json`, or CLIP's
//! `vocab.json` + `merges.txt` assembled into the same pipeline transformers' `CLIPTokenizer` builds.

use std::collections::HashMap;

use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, Tokenizer, TokenizerBuilder,
};

use crate::error::{Error, Result};

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// transformers' `CLIPTokenizer` pre-tokenisation pattern.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Reads `tokenizer.json` as `tokenizers` does, except that the model is read straight as CLIP's
/// BPE: `tokenizers`' own reader first copies the `model` section (vocabulary and merges) into a
/// generic JSON tree (about twice the peak memory for CLIP's 3.6 MB file), and the page's
/// WebAssembly memory keeps its high-water mark for good.
struct TokenizerJson;

impl<'de> Visitor<'de> for TokenizerJson {
    type Value = Tokenizer;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a tokenizer.json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Tokenizer, A::Error> {
        let mut builder = TokenizerBuilder::<
            ModelWrapper,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        >::new();
        // Each entry's `id` is left unread: an added token takes the vocabulary's id, as in
        // `tokenizers` (which only warns when they differ).
        let mut added: Vec<AddedToken> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => {
                    let version: String = map.next_value()?;
                    if version != "1.0" {
                        return Err(A::Error::custom(format!("unknown tokenizer.json version {version:?}")));
                    }
                }
                "truncation" => builder = builder.with_truncation(map.next_value()?),
                "padding" => builder = builder.with_padding(map.next_value()?),
                "added_tokens" => added = map.next_value()?,
                "normalizer" => builder = builder.with_normalizer(map.next_value()?),
                "pre_tokenizer" => builder = builder.with_pre_tokenizer(map.next_value()?),
                "model" => builder = builder.with_model(ModelWrapper::BPE(map.next_value::<BPE>()?)),
                "decoder" => builder = builder.with_decoder(map.next_value()?),
                "post_processor" => builder = builder.with_post_processor(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let mut tokenizer = Tokenizer::from(builder.build().map_err(A::Error::custom)?);
        tokenizer.add_tokens(added).map_err(A::Error::custom)?;
        Ok(tokenizer)
    }
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
        // Syntax first: `tokenizers` panics on a syntax error inside its `decoder` section (found
        // by fuzzing). The check builds nothing.
        serde_json::from_slice::<IgnoredAny>(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON ({e})")))?;
        let mut reader = serde_json::Deserializer::from_slice(json);
        let tokenizer = reader.deserialize_map(TokenizerJson).map_err(tok_err)?;
        Self::new(tokenizer, context_length)
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
