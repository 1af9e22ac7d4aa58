use ndarray::array;

use super::*;

fn small(seed: u64) -> ReviewConfig {
    ReviewConfig {
        samples: 400,
        vocab_size: 300,
        min_len: 8,
        max_len: 40,
        seed,
        ..ReviewConfig::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_reviews_and_another_seed_differs() {
    let a = generate_reviews(&small(7)).unwrap();
    let b = generate_reviews(&small(7)).unwrap();
    let c = generate_reviews(&small(8)).unwrap();
    assert_eq!(a.sequences, b.sequences);
    assert_eq!(a.labels, b.labels);
    assert_ne!(a.sequences, c.sequences);
    assert_ne!(a.labels, c.labels);
}

#[test]
fn classes_are_balanced_and_every_label_is_the_sign_of_a_nonzero_score() {
    for samples in [400, 401] {
        let cfg = ReviewConfig {
            samples,
            ..small(3)
        };
        let r = generate_reviews(&cfg).unwrap();
        let pos = r.labels.iter().filter(|&&l| l == 1).count();
        assert_eq!(pos, samples - samples / 2);
        assert_eq!(r.labels.len() - pos, samples / 2);
        for (s, &l) in r.sequences.iter().zip(&r.labels) {
            assert!(
                (cfg.min_len..=cfg.max_len).contains(&s.len()),
                "{}",
                s.len()
            );
            assert_eq!(s[0], START);
            assert!(
                s[1..]
                    .iter()
                    .all(|&t| t >= FIRST_WORD && (t as usize) < 300)
            );
            let score = sentiment_score(&r.vocab, s);
            assert_ne!(score, 0, "{}", r.vocab.decode(s));
            assert_eq!(i64::from(score > 0), l, "{}", r.vocab.decode(s));
        }
    }
}

#[test]
fn lengths_spread_over_the_configured_range() {
    let r = generate_reviews(&small(5)).unwrap();
    let lens: Vec<usize> = r.sequences.iter().map(Vec::len).collect();
    assert_eq!(*lens.iter().min().unwrap(), 8);
    assert_eq!(*lens.iter().max().unwrap(), 40);
}

#[test]
fn negation_flips_the_next_sentiment_word_and_intensifiers_double_it() {
    let v = Vocabulary::new(200).unwrap();
    let score = |t: &str| sentiment_score(&v, &v.encode(t));
    assert_eq!(score("this movie was good"), 1);
    assert_eq!(score("this movie was not good"), -1);
    assert_eq!(score("never a bad film"), 1);
    assert_eq!(score("not not good"), 1);
    assert_eq!(score("not very good"), -2);
    assert_eq!(score("very good but not awful"), 3);
    // An intensifier qualifies only the next word; a negation waits for a sentiment word.
    assert_eq!(score("very the good"), 1);
    assert_eq!(score("no plot and good acting bad"), -2);
}

#[test]
fn negations_decide_the_label_of_a_sizeable_share_of_reviews() {
    // Ignoring negations (a bag of words) must get a clear fraction of labels wrong,
    // otherwise a model could score well without learning them.
    let r = generate_reviews(&ReviewConfig {
        samples: 2000,
        ..small(11)
    })
    .unwrap();
    let not = |t: u32| r.vocab.kind(t) == WordKind::Negation;
    let wrong = r
        .sequences
        .iter()
        .zip(&r.labels)
        .filter(|(s, l)| {
            let plain: Vec<u32> = s.iter().copied().filter(|&t| !not(t)).collect();
            i64::from(sentiment_score(&r.vocab, &plain) > 0) != **l
        })
        .count();
    let share = wrong as f64 / 2000.0;
    assert!((0.08..0.5).contains(&share), "{share}");
    let negated = r
        .sequences
        .iter()
        .filter(|s| s.iter().any(|&t| not(t)))
        .count();
    assert!(negated > 2000 / 4, "{negated}");
}

#[test]
fn vocabulary_round_trips_words_and_decodes_without_padding() {
    let v = Vocabulary::new(150).unwrap();
    assert_eq!(v.len(), 150);
    assert_eq!(v.word(PAD), Some("<pad>"));
    assert_eq!(v.word(OOV), Some("<oov>"));
    assert_eq!(v.word(FIRST_WORD), Some("the"));
    assert_eq!(v.word(149), Some("w149"));
    assert_eq!(v.word(150), None);
    let ids = v.encode("Not GOOD zzz");
    assert_eq!(ids[0], START);
    assert_eq!(ids[3], OOV);
    assert_eq!(
        v.decode(&[0i64, 0, 1, i64::from(ids[1]), i64::from(ids[2]), 999]),
        "<start> not good <oov>"
    );
    let e = Vocabulary::new(10).unwrap_err().to_string();
    assert!(e.contains("vocabulary size 10 is below"), "{e}");
}

#[test]
fn bad_configs_are_typed_errors_naming_the_field() {
    let cases = [
        (
            ReviewConfig {
                min_len: 3,
                ..small(0)
            },
            "min_len 3",
        ),
        (
            ReviewConfig {
                max_len: 7,
                ..small(0)
            },
            "max_len 7 is below min_len 8",
        ),
        (
            ReviewConfig {
                max_phrases: 0,
                ..small(0)
            },
            "max_phrases",
        ),
        (
            ReviewConfig {
                negation_rate: 1.5,
                ..small(0)
            },
            "negation_rate 1.5",
        ),
        (
            ReviewConfig {
                vocab_size: 20,
                ..small(0)
            },
            "vocab_size 20",
        ),
    ];
    for (cfg, want) in cases {
        let e = generate_reviews(&cfg).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(e.to_string().contains(want), "{e} / {want}");
    }
    let huge = ReviewConfig {
        samples: usize::MAX / 2,
        max_len: 64,
        ..small(0)
    };
    assert!(matches!(generate_reviews(&huge), Err(Error::Limit(_))));
}

fn seqs() -> Vec<Vec<u32>> {
    vec![vec![1], vec![2, 3], vec![4, 5, 6]]
}

#[test]
fn pad_sequences_pre_and_post_match_keras() {
    // keras.utils.pad_sequences([[1], [2, 3], [4, 5, 6]]) and padding='post'.
    let pre = pad_sequences(&seqs(), None, Side::Pre, Side::Pre, 0).unwrap();
    assert_eq!(pre, array![[0, 0, 1], [0, 2, 3], [4, 5, 6]]);
    let post = pad_sequences(&seqs(), None, Side::Post, Side::Pre, 0).unwrap();
    assert_eq!(post, array![[1, 0, 0], [2, 3, 0], [4, 5, 6]]);
    let wide = pad_sequences(&seqs(), Some(5), Side::Pre, Side::Pre, -1).unwrap();
    assert_eq!(
        wide,
        array![[-1, -1, -1, -1, 1], [-1, -1, -1, 2, 3], [-1, -1, 4, 5, 6]]
    );
}

#[test]
fn pad_sequences_truncates_pre_or_post_like_keras() {
    // maxlen=2: 'pre' truncation keeps the last two, 'post' the first two.
    let pre = pad_sequences(&seqs(), Some(2), Side::Pre, Side::Pre, 0).unwrap();
    assert_eq!(pre, array![[0, 1], [2, 3], [5, 6]]);
    let post = pad_sequences(&seqs(), Some(2), Side::Pre, Side::Post, 0).unwrap();
    assert_eq!(post, array![[0, 1], [2, 3], [4, 5]]);
    let both_post = pad_sequences(&seqs(), Some(2), Side::Post, Side::Post, 0).unwrap();
    assert_eq!(both_post, array![[1, 0], [2, 3], [4, 5]]);
}

#[test]
fn pad_sequences_edge_cases() {
    let empty: Vec<Vec<u32>> = vec![];
    assert_eq!(
        pad_sequences(&empty, None, Side::Pre, Side::Pre, 0)
            .unwrap()
            .dim(),
        (0, 0)
    );
    let with_empty = vec![vec![], vec![7u32]];
    assert_eq!(
        pad_sequences(&with_empty, None, Side::Pre, Side::Pre, 0).unwrap(),
        array![[0], [7]]
    );
    assert_eq!(
        pad_sequences(&seqs(), Some(0), Side::Pre, Side::Pre, 0)
            .unwrap()
            .dim(),
        (3, 0)
    );
    let e = pad_sequences(&seqs(), Some(usize::MAX / 2), Side::Pre, Side::Pre, 0).unwrap_err();
    assert!(matches!(e, Error::Limit(_)), "{e}");
}

#[test]
fn label_helpers() {
    assert_eq!(label_column(&[1, 0, 1]), array![[1.0], [0.0], [1.0]]);
    assert_eq!(majority_baseline(&[1, 0, 1, 1]).unwrap(), 0.75);
    assert_eq!(majority_baseline(&[0, 0, 1]).unwrap(), 2.0 / 3.0);
    assert!(majority_baseline(&[]).is_err());
}
