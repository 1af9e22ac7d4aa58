//! Sentiment data for text classification: a seeded synthetic review generator
//! ([`generate_reviews`]) and Keras' [`pad_sequences`]. The Keras `imdb.npz` file is read
//! by [`super::imdb`].
//!
//! Token ids follow `keras.datasets.imdb`: 0 pads, 1 starts a review, 2 is out of
//! vocabulary, 3 is unused, and words start at 4 (`index_from = 3`), so a model built for
//! one data set takes the other unchanged.
//!
//! The labelling rule ([`sentiment_score`]) is what a model has to learn: every positive
//! word counts +1 and every negative word −1; an intensifier just before doubles it; a
//! negation ("not", "never", "no") flips the next sentiment word, however much neutral
//! filler lies between, and two negations cancel. The label is the score's sign; the
//! generator never makes a tie.

use std::collections::HashMap;

use ndarray::Array2;

use super::rng::SplitMix64;
use crate::error::{Error, Result};
use crate::limits;

/// Padding id (`Embedding(mask_zero=True)` masks it).
pub const PAD: u32 = 0;
/// Start-of-review id, the first token of every generated review (Keras' `start_char`).
pub const START: u32 = 1;
/// Out-of-vocabulary id (Keras' `oov_char`).
pub const OOV: u32 = 2;
/// The id of the first real word (Keras' `index_from = 3` plus one).
pub const FIRST_WORD: u32 = 4;

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "brilliant",
    "superb",
    "enjoyable",
    "delightful",
    "beautiful",
    "fun",
    "charming",
    "touching",
    "gripping",
    "funny",
    "best",
    "loved",
    "masterpiece",
    "fresh",
    "clever",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "worst",
    "poor",
    "weak",
    "horrible",
    "waste",
    "stupid",
    "mess",
    "bland",
    "tedious",
    "predictable",
    "annoying",
    "hated",
    "lame",
    "disappointing",
    "forgettable",
];
const NEGATIONS: &[&str] = &["not", "never", "no"];
const INTENSIFIERS: &[&str] = &["very", "really", "truly", "extremely"];
const NEUTRAL: &[&str] = &[
    "the",
    "a",
    "and",
    "of",
    "to",
    "is",
    "in",
    "it",
    "this",
    "that",
    "was",
    "as",
    "with",
    "for",
    "movie",
    "film",
    "but",
    "on",
    "his",
    "her",
    "are",
    "you",
    "he",
    "she",
    "one",
    "all",
    "at",
    "by",
    "an",
    "who",
    "they",
    "from",
    "so",
    "like",
    "just",
    "about",
    "out",
    "what",
    "has",
    "some",
    "there",
    "story",
    "plot",
    "actors",
    "scene",
    "scenes",
    "director",
    "ending",
    "characters",
    "music",
    "time",
    "script",
    "cast",
    "watch",
    "seen",
    "made",
    "end",
    "which",
    "when",
    "their",
    "then",
    "were",
    "been",
    "more",
    "also",
    "first",
    "two",
    "could",
    "would",
    "me",
    "my",
    "we",
    "its",
];
const SPECIALS: [&str; 4] = ["<pad>", "<start>", "<oov>", "<unused>"];

/// The role a word plays in [`sentiment_score`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordKind {
    /// Padding, start, out-of-vocabulary or unused id.
    Special,
    /// Counts +1 (or −1 when negated).
    Positive,
    /// Counts −1 (or +1 when negated).
    Negative,
    /// Flips the next sentiment word.
    Negation,
    /// Doubles the next sentiment word.
    Intensifier,
    /// Filler; no effect.
    Neutral,
}

/// The word list of the synthetic reviews: id → word and kind, word → id.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    words: Vec<String>,
    kinds: Vec<WordKind>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// The fixed words (specials, sentiment words, negations, intensifiers, the common neutral
    /// words) followed by numbered neutral fillers `w<id>` up to `size` ids in all.
    pub fn new(size: usize) -> Result<Self> {
        let fixed = Self::fixed_len();
        if size < fixed {
            return Err(Error::Config(format!(
                "vocabulary size {size} is below the {fixed} fixed ids (4 specials, {} \
                 sentiment words, {} negations, {} intensifiers, {} neutral words)",
                POSITIVE.len() + NEGATIVE.len(),
                NEGATIONS.len(),
                INTENSIFIERS.len(),
                NEUTRAL.len()
            )));
        }
        if size > MAX_VOCAB {
            return Err(Error::Limit(format!(
                "vocabulary size {size} exceeds {MAX_VOCAB}"
            )));
        }
        let mut words = Vec::with_capacity(size);
        let mut kinds = Vec::with_capacity(size);
        let groups: [(&[&str], WordKind); 6] = [
            (&SPECIALS, WordKind::Special),
            (NEUTRAL, WordKind::Neutral),
            (POSITIVE, WordKind::Positive),
            (NEGATIVE, WordKind::Negative),
            (NEGATIONS, WordKind::Negation),
            (INTENSIFIERS, WordKind::Intensifier),
        ];
        for (list, kind) in groups {
            for w in list {
                words.push((*w).to_string());
                kinds.push(kind);
            }
        }
        for id in fixed..size {
            words.push(format!("w{id}"));
            kinds.push(WordKind::Neutral);
        }
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Ok(Self {
            words,
            kinds,
            index,
        })
    }

    /// The smallest vocabulary size [`Vocabulary::new`] accepts.
    pub fn fixed_len() -> usize {
        SPECIALS.len()
            + NEUTRAL.len()
            + POSITIVE.len()
            + NEGATIVE.len()
            + NEGATIONS.len()
            + INTENSIFIERS.len()
    }

    /// Number of ids, specials included (an `Embedding`'s `input_dim`).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Never true: the specials are always there.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The word for `id`, `None` beyond the vocabulary.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(String::as_str)
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The kind of `id`; ids beyond the vocabulary are `Special` (as OOV).
    pub fn kind(&self, id: u32) -> WordKind {
        self.kinds
            .get(id as usize)
            .copied()
            .unwrap_or(WordKind::Special)
    }

    /// All ids of one kind, in id order.
    pub fn ids_of(&self, kind: WordKind) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&i| self.kinds[i as usize] == kind)
            .collect()
    }

    /// Space-separated words, padding left out (`<start>` and `<oov>` shown as such).
    pub fn decode<T: Copy + Into<i64>>(&self, tokens: &[T]) -> String {
        tokens
            .iter()
            .map(|&t| t.into())
            .filter(|&t| t != i64::from(PAD))
            .map(|t| {
                u32::try_from(t)
                    .ok()
                    .and_then(|id| self.word(id))
                    .unwrap_or("<oov>")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `<start>` followed by the ids of the whitespace-separated words of `text`
    /// (lower-cased; unknown words become [`OOV`]).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        std::iter::once(START)
            .chain(
                text.split_whitespace()
                    .map(|w| self.id(&w.to_lowercase()).unwrap_or(OOV)),
            )
            .collect()
    }
}

/// The largest vocabulary [`Vocabulary::new`] builds (its strings live on the host).
pub const MAX_VOCAB: usize = 1 << 22;

/// The labelling rule: +1 per positive word, −1 per negative word, doubled by an intensifier
/// directly before it (after any negation), flipped by a pending negation. A negation stays
/// pending over neutral words until the next sentiment word uses it; two negations cancel.
pub fn sentiment_score<T: Copy + Into<i64>>(vocab: &Vocabulary, tokens: &[T]) -> i64 {
    let (mut score, mut negated, mut intense) = (0i64, false, false);
    for &t in tokens {
        let kind = u32::try_from(t.into()).map_or(WordKind::Special, |id| vocab.kind(id));
        match kind {
            WordKind::Negation => negated = !negated,
            WordKind::Intensifier => intense = true,
            WordKind::Positive | WordKind::Negative => {
                let mut v = if kind == WordKind::Positive { 1 } else { -1 };
                if negated {
                    v = -v;
                }
                if intense {
                    v *= 2;
                }
                score += v;
                (negated, intense) = (false, false);
            }
            // An intensifier qualifies only the word right after it.
            WordKind::Neutral | WordKind::Special => intense = false,
        }
    }
    score
}

/// Settings of [`generate_reviews`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewConfig {
    /// Number of reviews (classes balanced: `samples / 2` negative, the rest positive).
    pub samples: usize,
    /// Vocabulary size, specials included (at least [`Vocabulary::fixed_len`]).
    pub vocab_size: usize,
    /// Shortest review in tokens, the start token included (at least 4).
    pub min_len: usize,
    /// Longest review in tokens (at least `min_len`).
    pub max_len: usize,
    /// Most sentiment phrases in one review (at least 1); reviews get 1 to
    /// `min(max_phrases, body / 6)` (at least 1).
    pub max_phrases: usize,
    /// Probability that a sentiment phrase is negated ("not good").
    pub negation_rate: f64,
    /// Probability that a sentiment phrase is intensified ("very good").
    pub intensifier_rate: f64,
    /// Seed; the same seed and config give the same reviews on every machine.
    pub seed: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            samples: 2000,
            vocab_size: 1000,
            min_len: 8,
            max_len: 64,
            max_phrases: 4,
            negation_rate: 0.3,
            intensifier_rate: 0.15,
            seed: 0,
        }
    }
}

impl ReviewConfig {
    /// Checks every field (`Error::Config` naming the field, `Error::Limit` for sizes).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.min_len < 4 {
            return bad(format!(
                "min_len {} must be at least 4 (start token + \"not very good\")",
                self.min_len
            ));
        }
        if self.max_len < self.min_len {
            return bad(format!(
                "max_len {} is below min_len {}",
                self.max_len, self.min_len
            ));
        }
        if self.max_phrases == 0 {
            return bad("max_phrases must be at least 1".into());
        }
        for (name, p) in [
            ("negation_rate", self.negation_rate),
            ("intensifier_rate", self.intensifier_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} {p} must be within [0, 1]"));
            }
        }
        let fixed = Vocabulary::fixed_len();
        if self.vocab_size < fixed || self.vocab_size > MAX_VOCAB {
            return bad(format!(
                "vocab_size {} must be within {fixed}..={MAX_VOCAB}",
                self.vocab_size
            ));
        }
        limits::check_host_elems(
            &format!("{} reviews of up to {} tokens", self.samples, self.max_len),
            limits::count("review tokens", &[self.samples, self.max_len])?,
            4,
        )
    }
}

/// Generated reviews: token sequences (variable length, unpadded), labels (0 negative,
/// 1 positive) and the vocabulary to decode them.
#[derive(Clone, Debug)]
pub struct Reviews {
    /// One token sequence per review, starting with [`START`].
    pub sequences: Vec<Vec<u32>>,
    /// 0 (negative) or 1 (positive), one per review.
    pub labels: Vec<i64>,
    /// The word list.
    pub vocab: Vocabulary,
}

/// Generates `cfg.samples` reviews. Each review is a start token followed by 1 to
/// `max_phrases` sentiment phrases (`[negation] [intensifier] word`) and neutral filler, in
/// shuffled order, `min_len..=max_len` tokens long. The label is drawn first (exactly
/// balanced, shuffled); phrases that disagree with it have their word swapped for one of the
/// other polarity until the score's sign matches, so the score is never zero and about a
/// third of the phrases disagree with the label.
pub fn generate_reviews(cfg: &ReviewConfig) -> Result<Reviews> {
    cfg.validate()?;
    let vocab = Vocabulary::new(cfg.vocab_size)?;
    let ids = |k| vocab.ids_of(k);
    let (pos, neg, nots, ints, neutral) = (
        ids(WordKind::Positive),
        ids(WordKind::Negative),
        ids(WordKind::Negation),
        ids(WordKind::Intensifier),
        ids(WordKind::Neutral),
    );
    let mut rng = SplitMix64::new(cfg.seed);
    let mut labels: Vec<i64> = (0..cfg.samples)
        .map(|i| i64::from(i >= cfg.samples / 2))
        .collect();
    rng.shuffle(&mut labels);
    let mut sequences = Vec::with_capacity(cfg.samples);
    for &label in &labels {
        let target = if label == 1 { 1 } else { -1 };
        let len = rng.range_inclusive(cfg.min_len, cfg.max_len);
        let body = len - 1;
        let most = cfg.max_phrases.min((body / 6).max(1)).min(body / 3);
        let k = rng.range_inclusive(1, most.max(1));
        // (polarity, negated, intensified); effective sign = polarity * (negated ? -1 : 1).
        let mut phrases: Vec<(i64, bool, bool)> = (0..k)
            .map(|_| {
                let p = if rng.chance(0.5) { 1 } else { -1 };
                (
                    p,
                    rng.chance(cfg.negation_rate),
                    rng.chance(cfg.intensifier_rate),
                )
            })
            .collect();
        let effective =
            |&(p, n, i): &(i64, bool, bool)| p * if n { -1 } else { 1 } * if i { 2 } else { 1 };
        // Swap disagreeing words one at a time; once none disagree the sum has the label's
        // sign, so this ends within k steps.
        while phrases.iter().map(effective).sum::<i64>() * target <= 0 {
            let against: Vec<usize> = (0..k)
                .filter(|&i| effective(&phrases[i]) * target < 0)
                .collect();
            let pick = against[rng.below(against.len())];
            phrases[pick].0 = -phrases[pick].0;
        }
        let mut units: Vec<Vec<u32>> = Vec::with_capacity(body);
        for (p, n, i) in phrases {
            let mut unit = Vec::with_capacity(3);
            if n {
                unit.push(nots[rng.below(nots.len())]);
            }
            if i {
                unit.push(ints[rng.below(ints.len())]);
            }
            let list = if p > 0 { &pos } else { &neg };
            unit.push(list[rng.below(list.len())]);
            units.push(unit);
        }
        let used: usize = units.iter().map(Vec::len).sum();
        for _ in used..body {
            // Mostly the common real words (the first ids), sometimes any filler, so a
            // decoded review reads like text with rare words in it.
            let pool = if rng.chance(0.7) {
                NEUTRAL.len()
            } else {
                neutral.len()
            };
            units.push(vec![neutral[rng.below(pool)]]);
        }
        rng.shuffle(&mut units);
        let mut seq = Vec::with_capacity(len);
        seq.push(START);
        seq.extend(units.into_iter().flatten());
        sequences.push(seq);
    }
    Ok(Reviews {
        sequences,
        labels,
        vocab,
    })
}

/// Which end of a sequence [`pad_sequences`] pads or truncates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Side {
    /// At the start (Keras' default `'pre'`).
    #[default]
    Pre,
    /// At the end (`'post'`).
    Post,
}

/// Keras' `pad_sequences`: one row of `maxlen` ids per sequence (`maxlen = None`: the
/// longest sequence's length). Shorter sequences are filled with `value` on the `padding`
/// side; longer ones lose tokens on the `truncating` side (`Pre` keeps the last `maxlen`).
/// Keras' defaults are `Side::Pre`, `Side::Pre`, `0`.
pub fn pad_sequences<S, T>(
    sequences: &[S],
    maxlen: Option<usize>,
    padding: Side,
    truncating: Side,
    value: i64,
) -> Result<Array2<i64>>
where
    S: AsRef<[T]>,
    T: Copy + Into<i64>,
{
    let width = maxlen.unwrap_or_else(|| {
        sequences
            .iter()
            .map(|s| s.as_ref().len())
            .max()
            .unwrap_or(0)
    });
    let n = sequences.len();
    let elems = limits::count("padded sequences", &[n, width])?;
    limits::check_host_elems(&format!("{n} padded sequences of length {width}"), elems, 8)?;
    let mut out = Array2::from_elem((n, width), value);
    for (mut row, s) in out.rows_mut().into_iter().zip(sequences) {
        let s = s.as_ref();
        let kept = if s.len() > width {
            match truncating {
                Side::Pre => &s[s.len() - width..],
                Side::Post => &s[..width],
            }
        } else {
            s
        };
        let start = match padding {
            Side::Pre => width - kept.len(),
            Side::Post => 0,
        };
        for (d, &t) in row.iter_mut().skip(start).zip(kept) {
            *d = t.into();
        }
    }
    Ok(out)
}

/// Labels as an `(N, 1)` column of `f64` (the target of a `Dense(1, sigmoid)` model).
pub fn label_column(labels: &[i64]) -> Array2<f64> {
    Array2::from_shape_fn((labels.len(), 1), |(i, _)| labels[i] as f64)
}

/// Accuracy of always predicting the most frequent label (`Error::Data` for no labels).
pub fn majority_baseline(labels: &[i64]) -> Result<f64> {
    if labels.is_empty() {
        return Err(Error::Data("majority baseline of no labels".into()));
    }
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    Ok(most as f64 / labels.len() as f64)
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
