//! Labels into prompts for the text encoder: template ensembles (CLIP's 80 ImageNet templates,
//! NVlabs' 7-template subset, the single default) and labels that are already sentences.

use crate::error::{Error, Result};

/// The prompt every label is put into unless others are given.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// NVlabs' subset of CLIP's templates (`datasets/imagenet_template.py`, `sub_imagenet_template`),
/// used by the official segmentation evaluation.
pub const NVLABS_TEMPLATES: [&str; 7] = [
    "itap of a {}.",
    "a bad photo of a {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
];

/// CLIP's 80 prompt templates for ImageNet zero-shot classification (Radford et al. 2021; NVlabs'
/// `full_imagenet_templates`).
pub const IMAGENET_TEMPLATES: [&str; 80] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
];

/// A named set of templates, or the user's own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Templates {
    /// "a photo of a {}."
    #[default]
    Single,
    /// NVlabs' seven ([`NVLABS_TEMPLATES`]).
    Nvlabs,
    /// CLIP's eighty ([`IMAGENET_TEMPLATES`]).
    Imagenet,
    /// Given one by one, each with `{}` where the label goes.
    Custom(Vec<String>),
}

impl std::str::FromStr for Templates {
    type Err = Error;
    /// A preset's name: `single`, `nvlabs` or `imagenet`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "single" | "default" => Ok(Self::Single),
            "nvlabs" => Ok(Self::Nvlabs),
            "imagenet" | "clip" => Ok(Self::Imagenet),
            _ => Err(Error::InvalidInput(format!(
                "template preset {s:?} is not one of single (\"a photo of a {{}}.\"), nvlabs (7), imagenet (CLIP's 80)"
            ))),
        }
    }
}

impl Templates {
    /// The user's templates, each checked for its `{}`; none given is the single default.
    pub fn custom(templates: Vec<String>) -> Result<Self> {
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::InvalidInput(format!("the prompt template {t:?} has no {{}} where the label goes")));
        }
        Ok(if templates.is_empty() { Self::Single } else { Self::Custom(templates) })
    }

    pub fn as_slice(&self) -> Vec<&str> {
        match self {
            Self::Single => vec![DEFAULT_TEMPLATE],
            Self::Nvlabs => NVLABS_TEMPLATES.to_vec(),
            Self::Imagenet => IMAGENET_TEMPLATES.to_vec(),
            Self::Custom(t) => t.iter().map(String::as_str).collect(),
        }
    }

    /// The prompts one label is embedded by: each template filled with it, or the label alone when
    /// it already reads as a sentence ("a cat", "the sky.", "cats on a sofa!"), which a template
    /// would only garble ("a photo of a a cat.").
    pub fn prompts(&self, label: &str) -> Vec<String> {
        if is_sentence(label) {
            vec![label.to_owned()]
        } else {
            self.as_slice().iter().map(|t| t.replace("{}", label)).collect()
        }
    }
}

/// Words that open a noun phrase in English: a label starting with one is a phrase of its own.
const OPENING_WORDS: [&str; 12] = ["a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "their", "some"];

/// Whether a label already reads as a prompt: it opens with an article or determiner, or ends as a
/// sentence does.
pub fn is_sentence(label: &str) -> bool {
    let label = label.trim();
    let first = label.split_whitespace().next().unwrap_or("");
    let has_more = label.split_whitespace().nth(1).is_some();
    (has_more && OPENING_WORDS.iter().any(|w| first.eq_ignore_ascii_case(w))) || label.ends_with(['.', '!', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_hold_what_their_sources_list() {
        assert_eq!(Templates::Imagenet.as_slice().len(), 80);
        assert_eq!(Templates::Nvlabs.as_slice().len(), 7);
        // Every preset template takes the label once.
        for t in IMAGENET_TEMPLATES.iter().chain(&NVLABS_TEMPLATES) {
            assert_eq!(t.matches("{}").count(), 1, "{t}");
        }
        // NVlabs' subset is drawn from CLIP's eighty.
        assert!(NVLABS_TEMPLATES.iter().all(|t| IMAGENET_TEMPLATES.contains(t)));
        assert_eq!("NVlabs".parse::<Templates>().unwrap(), Templates::Nvlabs);
        let e = "imagenet80".parse::<Templates>().unwrap_err().to_string();
        assert!(e.contains("imagenet80") && e.contains("single"), "{e}");
    }

    #[test]
    fn a_label_that_is_a_sentence_is_not_wrapped_again() {
        let t = Templates::Single;
        assert_eq!(t.prompts("cat"), ["a photo of a cat."]);
        assert_eq!(t.prompts("a cat"), ["a cat"]);
        assert_eq!(t.prompts("The sky"), ["The sky"]);
        assert_eq!(t.prompts("cats on a sofa."), ["cats on a sofa."]);
        // One word that happens to be an article is still a label.
        assert_eq!(t.prompts("a"), ["a photo of a a."]);
        assert_eq!(Templates::Nvlabs.prompts("an apple").len(), 1);
        assert_eq!(Templates::Nvlabs.prompts("apple").len(), 7);
        assert!(Templates::custom(vec!["no slot".into()]).is_err());
        assert_eq!(Templates::custom(vec![]).unwrap(), Templates::Single);
    }
}
